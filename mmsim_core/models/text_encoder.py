"""Text encoders for the optional text modality (paper §7.4, §7.8.1): ``encode(list[str]) -> (B, text_dim)``.

- ``BagOfWordsTextEncoder``: the offline default. Words (lower-cased alphanumeric runs) and word
  bigrams are hashed with a stable hash (CRC32, not Python's salted ``hash``) into ``num_buckets``
  ids and averaged by a trainable ``nn.EmbeddingBag``. Bigrams let "open jar" and "jar open"
  differ. Trained with the model; saved inside the checkpoint.
- ``OpenCLIPTextEncoder``: the paper's frozen OpenCLIP text tower (ViT-H-14, ``laion2b_s32b_b79k``,
  1024-d), loaded like ``OpenCLIPContextEncoder``; absent weights raise a clear ``MMSimError``.

Both return an empty string's embedding as a finite vector (zeros for the bag of words).
"""

from __future__ import annotations

import re
import warnings
import zlib
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from mmsim_core.errors import ActionInputError, MMSimError
from mmsim_core.models.context_encoder import (
    OPENCLIP_DEFAULT_MODEL,
    OPENCLIP_DEFAULT_PRETRAINED,
    OPENCLIP_WEIGHTS,
    _jsonable,
    _model_cfg_for,
    build_open_clip,
    load_open_clip,
)

_WORD = re.compile(r"[a-z0-9]+")


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ActionInputError(f"text must be a list of strings (one per sample), got {type(texts).__name__}")
    return list(texts)


def tokenize_words(text: str) -> list[str]:
    """Lower-cased words plus ``"a_b"`` bigrams of neighbouring words."""
    words = _WORD.findall(text.lower())
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:])]


class BagOfWordsTextEncoder(ModelMixin, ConfigMixin):
    """Hashed words and bigrams → mean of trainable embeddings: list[str] → (B, text_dim)."""

    @register_to_config
    def __init__(self, text_dim: int = 64, num_buckets: int = 4096):
        super().__init__()
        if text_dim <= 0 or num_buckets <= 0:
            raise ValueError(f"text_dim and num_buckets must be positive, got {text_dim}, {num_buckets}")
        self.embedding = nn.EmbeddingBag(num_buckets, text_dim, mode="mean")
        nn.init.normal_(self.embedding.weight, std=text_dim**-0.5)

    @property
    def feature_dim(self) -> int:
        return self.config.text_dim

    def token_ids(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Flat bucket ids and per-text offsets for ``nn.EmbeddingBag``."""
        ids, offsets = [], []
        for t in _check_texts(texts):
            offsets.append(len(ids))
            ids.extend(zlib.crc32(tok.encode()) % self.config.num_buckets for tok in tokenize_words(t))
        dev = self.embedding.weight.device
        return torch.tensor(ids, dtype=torch.long, device=dev), torch.tensor(offsets, dtype=torch.long, device=dev)

    def encode(self, texts: Sequence[str]) -> Tensor:
        ids, offsets = self.token_ids(texts)
        return self.embedding(ids, offsets)  # (B, text_dim); zeros for a text without words

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.encode(texts)


class OpenCLIPTextEncoder(ModelMixin, ConfigMixin):
    """Frozen OpenCLIP text tower: list[str] → (B, embed_dim) (1024 for ViT-H-14).

    Same loading rules and ``weights`` modes as ``OpenCLIPContextEncoder``. Only the text tower is
    kept (the image tower of a loaded CLIP model is dropped), so a saved checkpoint holds just it.
    """

    @register_to_config
    def __init__(
        self,
        model_name: str = OPENCLIP_DEFAULT_MODEL,
        pretrained: str = OPENCLIP_DEFAULT_PRETRAINED,
        normalize: bool = False,
        weights: str = "pretrained",
        model_cfg: dict | None = None,
    ):
        super().__init__()
        if weights not in OPENCLIP_WEIGHTS:
            raise ValueError(f"weights must be one of {list(OPENCLIP_WEIGHTS)}, got {weights!r}")
        if weights == "pretrained":
            model, model_cfg, _ = load_open_clip(model_name, pretrained, what="OpenCLIP text", text_tower=True)
            _check_text_cfg(model_name, model_cfg)
            self.register_to_config(weights="checkpoint", model_cfg=_jsonable(model_cfg))
        else:
            if weights == "checkpoint" and model_cfg is None:
                raise ValueError("weights='checkpoint' needs model_cfg (it is written by save_pretrained)")
            recorded = model_cfg
            if model_cfg is None:
                model_cfg = _model_cfg_for(model_name)
                self.register_to_config(model_cfg=_jsonable(model_cfg))
            _check_text_cfg(model_name, model_cfg)
            model = build_open_clip(model_name, recorded, text_tower=True)
            if weights == "random":
                warnings.warn(
                    f"OpenCLIPTextEncoder: {model_name} built with RANDOM weights; its features are meaningless "
                    "(use for speed benchmarks and tests only).",
                    stacklevel=2,
                )
        # open_clip's custom-text layout keeps the whole text tower in one module; the image tower is dropped.
        self.text = model.text
        del model
        self.text.eval().requires_grad_(False)
        self.tokenizer = _tokenizer_for(model_name, model_cfg)
        self.model_name, self.pretrained, self.normalize = model_name, str(pretrained), normalize
        self.feature_dim = int(model_cfg["embed_dim"])

    def train(self, mode: bool = True):
        super().train(mode)
        self.text.eval()
        return self

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Tensor:
        tokens = self.tokenizer(_check_texts(texts)).to(self.text.token_embedding.weight.device)
        z = self.text(tokens)
        z = (z[0] if isinstance(z, tuple) else z).float()  # (B, d)
        return F.normalize(z, dim=-1) if self.normalize else z

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.encode(texts)


def _check_text_cfg(model_name: str, model_cfg: dict) -> None:
    if model_cfg.get("custom_text") or "hf_model_name" in model_cfg.get("text_cfg", {}):
        raise MMSimError(f"OpenCLIPTextEncoder: {model_name} uses a Hugging Face text model, "
                         "which is not supported here")


def _tokenizer_for(model_name: str, model_cfg: dict):
    """``open_clip.get_tokenizer`` for this text tower: the tokenizer open_clip pairs with ``model_name``, at
    the context length and with the options of the recorded architecture (the built-in BPE tokenizer
    when the name is not registered with open_clip)."""
    import open_clip

    text_cfg = model_cfg.get("text_cfg", {})
    registered = model_name in open_clip.list_models()
    if text_cfg.get("hf_tokenizer_name") and not registered:
        raise MMSimError(f"OpenCLIPTextEncoder: {model_name} needs the Hugging Face tokenizer "
                         f"{text_cfg['hf_tokenizer_name']!r} but is not an OpenCLIP model name to pair it with")
    return open_clip.get_tokenizer(model_name if registered else "", context_length=text_cfg.get("context_length", 77),
                                   **text_cfg.get("tokenizer_kwargs", {}))
