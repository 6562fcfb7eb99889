"""Context-frame and text encoders: the small trainable ones, and OpenCLIP loading from a tiny local
checkpoint built here (no network: HF_HUB_OFFLINE=1 from conftest)."""

from __future__ import annotations

import json
import zlib

import open_clip
import pytest
import torch
import torch.nn.functional as F

from mmsim_core.errors import ActionInputError, MMSimError
from mmsim_core.models import (
    BagOfWordsTextEncoder,
    OpenCLIPContextEncoder,
    OpenCLIPTextEncoder,
    SmallContextEncoder,
)
from mmsim_core.models.text_encoder import tokenize_words

TINY_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny OpenCLIP model with weights saved two ways: a Hub-layout folder and a bare state dict
    file for a model name registered with open_clip."""
    root = tmp_path_factory.mktemp("openclip")
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP).eval()
    folder = root / "snapshot"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": PREPROCESS}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    cfg_file = root / "mmsim-test-tiny-vit.json"
    cfg_file.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg_file)
    weights = root / "tiny.bin"
    torch.save(model.state_dict(), weights)
    return {"model": model, "folder": folder, "file": weights, "name": "mmsim-test-tiny-vit"}


def frames(b=2, n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, n, 3, size, size, generator=g) * 2 - 1


# ----------------------------------------------------------------------------------------------
# SmallContextEncoder
# ----------------------------------------------------------------------------------------------
def test_small_context_encoder_shapes_and_training(tmp_path):
    torch.manual_seed(0)
    enc = SmallContextEncoder(feature_dim=32, width=8)
    assert enc.feature_dim == 32
    x = frames()
    z = enc.encode(x)
    assert z.shape == (2, 4, 32)
    assert enc.encode(frames(size=48)).shape == (2, 4, 32)  # other sizes are resized
    # per-frame: a frame's feature does not depend on the other frames of the batch
    torch.testing.assert_close(enc.encode(x[:1, :1]), z[:1, :1], rtol=1e-5, atol=1e-5)
    z.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    enc.save_pretrained(tmp_path)
    again = SmallContextEncoder.from_pretrained(tmp_path)
    torch.testing.assert_close(again.encode(x), enc.encode(x))
    with pytest.raises(ActionInputError, match=r"\(B, N, 3, H, W\)"):
        enc.encode(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="positive"):
        SmallContextEncoder(feature_dim=0)


# ----------------------------------------------------------------------------------------------
# OpenCLIP image tower
# ----------------------------------------------------------------------------------------------
def _reference_image_features(model, x):
    y = ((x.flatten(0, 1) + 1) / 2).clamp(0, 1)
    y = F.interpolate(y, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    y = (y - 0.5) / 0.25
    with torch.no_grad():
        return model.visual(y).view(x.shape[0], x.shape[1], -1)


def test_openclip_context_encoder_loads_local_folder(tiny_clip, tmp_path):
    enc = OpenCLIPContextEncoder(model_name="ViT-H-14", pretrained=str(tiny_clip["folder"]))
    assert enc.feature_dim == 24 and enc.image_size == (32, 32)
    x = frames()
    z = enc.encode(x)
    assert z.shape == (2, 4, 24)
    torch.testing.assert_close(z, _reference_image_features(tiny_clip["model"], x), rtol=1e-4, atol=1e-5)
    # frozen: no trainable parameter, and train() keeps the tower in eval mode
    assert not any(p.requires_grad for p in enc.parameters())
    assert not enc.train().visual.training
    # the saved checkpoint is self-contained: it reloads without the original weights
    enc.save_pretrained(tmp_path / "ckpt")
    again = OpenCLIPContextEncoder.from_pretrained(tmp_path / "ckpt")
    assert again.config.weights == "checkpoint"
    torch.testing.assert_close(again.encode(x), z)


def test_openclip_context_encoder_loads_state_dict_file(tiny_clip):
    enc = OpenCLIPContextEncoder(model_name=tiny_clip["name"], pretrained=str(tiny_clip["file"]))
    x = frames()
    # no preprocess config in a bare state dict: OpenCLIP's default mean/std, the model's input size
    y = ((x.flatten(0, 1) + 1) / 2).clamp(0, 1)
    y = F.interpolate(y, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    y = (y - enc.mean) / enc.std
    with torch.no_grad():
        ref = tiny_clip["model"].visual(y).view(2, 4, -1)
    torch.testing.assert_close(enc.encode(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "pretrained",
    ["/nonexistent/open_clip_pytorch_model.bin", "hf-hub:mmsim-test/no-such-clip-model"],
)
def test_openclip_context_encoder_clear_error_when_weights_absent(pretrained):
    with pytest.raises(MMSimError, match=r"OpenCLIP image weights for ViT-H-14 not found at .*context_encoder='small'"):
        OpenCLIPContextEncoder(model_name="ViT-H-14", pretrained=pretrained)


def test_openclip_context_encoder_folder_without_config(tmp_path):
    with pytest.raises(MMSimError, match="no open_clip_config.json"):
        OpenCLIPContextEncoder(pretrained=str(tmp_path))


def test_openclip_random_weights_are_loudly_flagged(tiny_clip):
    with pytest.warns(UserWarning, match="RANDOM weights"):
        enc = OpenCLIPContextEncoder(model_name=tiny_clip["name"], weights="random")
    assert enc.encode(frames()).shape == (2, 4, 24)
    with pytest.raises(ValueError, match="weights must be one of"):
        OpenCLIPContextEncoder(weights="imagenet")


# ----------------------------------------------------------------------------------------------
# Text encoders
# ----------------------------------------------------------------------------------------------
def test_bag_of_words_text_encoder(tmp_path):
    torch.manual_seed(0)
    enc = BagOfWordsTextEncoder(text_dim=16, num_buckets=256)
    assert enc.feature_dim == 16
    texts = ["Peel a potato", "potato peel", "", "Slice a cucumber"]
    z = enc.encode(texts)
    assert z.shape == (4, 16)
    assert torch.equal(z[2], torch.zeros(16))  # no words: zeros
    assert not torch.allclose(z[0], z[1])  # bigrams make word order matter
    assert tokenize_words("Open/close a JAR") == ["open", "close", "a", "jar", "open_close", "close_a", "a_jar"]
    # stable hashing (CRC32), independent of Python's per-process hash salt
    ids, offsets = enc.token_ids(["jar"])
    assert ids.tolist() == [zlib.crc32(b"jar") % 256] and offsets.tolist() == [0]
    z.sum().backward()
    assert enc.embedding.weight.grad.abs().sum() > 0
    enc.save_pretrained(tmp_path)
    torch.testing.assert_close(BagOfWordsTextEncoder.from_pretrained(tmp_path).encode(texts), z.detach())
    with pytest.raises(ActionInputError, match="list of strings"):
        enc.encode("peel a potato")


def test_openclip_text_encoder_loads_local_folder(tiny_clip, tmp_path):
    enc = OpenCLIPTextEncoder(pretrained=str(tiny_clip["folder"]))
    texts = ["peel a potato", "open a jar of almond butter"]
    z = enc.encode(texts)
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=16)(texts)
    with torch.no_grad():
        ref = tiny_clip["model"].encode_text(tokens)
    assert z.shape == (2, 24) and enc.feature_dim == 24
    torch.testing.assert_close(z, ref, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.save_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(OpenCLIPTextEncoder.from_pretrained(tmp_path / "ckpt").encode(texts), z)
    # from a bare state-dict file of a registered model name
    by_file = OpenCLIPTextEncoder(model_name=tiny_clip["name"], pretrained=str(tiny_clip["file"]))
    torch.testing.assert_close(by_file.encode(texts), z)


def test_openclip_text_encoder_clear_error_when_weights_absent(tmp_path):
    with pytest.raises(MMSimError, match=r"OpenCLIP text weights for ViT-H-14 not found at .*text_encoder='bow'"):
        OpenCLIPTextEncoder(pretrained=str(tmp_path / "missing.safetensors"))


def test_openclip_random_towers_from_the_public_api_save_and_reload(tiny_clip, tmp_path):
    """Random weights come from ``open_clip.create_model(name, pretrained=None)``; a saved checkpoint rebuilds
    the recorded architecture without the name and reloads the same tower."""
    with pytest.warns(UserWarning, match="RANDOM weights"):
        text = OpenCLIPTextEncoder(model_name=tiny_clip["name"], weights="random")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        image = OpenCLIPContextEncoder(model_name=tiny_clip["name"], weights="random")
    reference = open_clip.create_model(tiny_clip["name"], pretrained=None, force_custom_text=True)
    assert {k: v.shape for k, v in text.text.state_dict().items()} == {
        k: v.shape for k, v in reference.text.state_dict().items()}
    assert {k: v.shape for k, v in image.visual.state_dict().items()} == {
        k: v.shape for k, v in reference.visual.state_dict().items()}
    texts = ["peel a potato", ""]
    z = text.encode(texts)
    assert z.shape == (2, 24) and torch.isfinite(z).all()
    assert text.tokenizer(texts).shape == (2, TINY_CLIP["text_cfg"]["context_length"])
    text.save_pretrained(tmp_path / "text")
    image.save_pretrained(tmp_path / "image")
    with pytest.warns(UserWarning, match="RANDOM weights"):  # still the random weights, now from the folder
        again_text = OpenCLIPTextEncoder.from_pretrained(tmp_path / "text")
        again_image = OpenCLIPContextEncoder.from_pretrained(tmp_path / "image")
    torch.testing.assert_close(again_text.encode(texts), z)
    x = frames()
    torch.testing.assert_close(again_image.encode(x), image.encode(x))
    with pytest.raises(MMSimError, match="unknown OpenCLIP model"):
        OpenCLIPTextEncoder(model_name="mmsim-no-such-arch", weights="random")
