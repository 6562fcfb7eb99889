"""MultisensoryVideoPipeline: the public contract on the tiny preset (CPU, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fixtures.models import randomize_zero_init
from mmsim_core import MultisensoryPipelineOutput, MultisensoryVideoPipeline
from mmsim_core.errors import ActionInputError, MMSimError
from mmsim_core.schema import MODALITIES, MODALITY_NAMES, NormalizationStats

torch.set_num_threads(2)
B, H, F, S = 2, 4, 8, 64


def plain_config(config) -> dict:
    """A config as JSON sees it (tuples become lists), without bookkeeping keys like _name_or_path."""
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}))


def make_stats() -> NormalizationStats:
    rng = np.random.default_rng(0)
    raw = {n: rng.normal(size=(16, *MODALITIES[n].shape)) * 10 for n in MODALITY_NAMES}
    return NormalizationStats.fit(raw)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    p = MultisensoryVideoPipeline.from_preset("mmsim-tiny", normalization_stats=make_stats())
    randomize_zero_init(p.denoiser)
    p.set_progress_bar_config(disable=True)
    return p


def make_inputs(b=B, seed=0):
    rng = np.random.default_rng(seed)
    ctx = rng.integers(0, 256, (b, H, S, S, 3), dtype=np.uint8)
    acts = {n: rng.random((b, H + F, *MODALITIES[n].shape), dtype=np.float32) for n in MODALITY_NAMES}
    return ctx, acts


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_contract_all_modalities(pipe):
    ctx, acts = make_inputs()
    out = pipe(context=ctx, actions=acts, generator=gen())
    assert isinstance(out, MultisensoryPipelineOutput)
    assert out.frames.shape == (B, F, S, S, 3) and out.frames.dtype == np.uint8
    assert out.frames.std() > 0


def test_contract_one_modality_and_none(pipe):
    ctx, acts = make_inputs()
    out = pipe(context=ctx, actions={"emg": acts["emg"]}, generator=gen())
    assert out.frames.shape == (B, F, S, S, 3) and out.frames.dtype == np.uint8
    out_none = pipe(context=ctx, actions=None, generator=gen())
    assert out_none.frames.shape == (B, F, S, S, 3)
    assert not np.array_equal(out.frames, out_none.frames)


def test_actions_change_the_output(pipe):
    ctx, acts = make_inputs()
    a = pipe(context=ctx, actions=acts, generator=gen()).frames
    acts2 = dict(acts, hand_pose=1.0 - acts["hand_pose"])
    b = pipe(context=ctx, actions=acts2, generator=gen()).frames
    assert not np.array_equal(a, b)


def test_dropped_modality_identical_output(pipe):
    ctx, acts = make_inputs()
    kept = {k: acts[k] for k in ("hand_pose", "body_pose", "hand_force")}
    without = pipe(context=ctx, actions=kept, generator=gen()).frames
    # The same modality present in the dict but masked off, with other data: no influence.
    masked = pipe(
        context=ctx,
        actions={**kept, "emg": np.zeros_like(acts["emg"])},
        action_mask={"emg": np.zeros(B, dtype=bool)},
        generator=gen(),
    ).frames
    masked2 = pipe(
        context=ctx, actions=acts, action_mask={"emg": np.zeros(B, dtype=bool)}, generator=gen()
    ).frames
    assert np.array_equal(without, masked) and np.array_equal(without, masked2)


def test_seeded_generation_is_deterministic(pipe):
    ctx, acts = make_inputs()
    a = pipe(context=ctx, actions=acts, generator=gen(5)).frames
    b = pipe(context=ctx, actions=acts, generator=gen(5)).frames
    c = pipe(context=ctx, actions=acts, generator=gen(6)).frames
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_batch_rows_are_independent(pipe):
    ctx, acts = make_inputs()
    latents = torch.randn(B, F, 3, S, S, generator=gen(1))
    full = pipe(context=ctx, actions=acts, latents=latents).frames
    one = pipe(context=ctx[:1], actions={k: v[:1] for k, v in acts.items()}, latents=latents[:1]).frames
    assert np.abs(full[0].astype(int) - one[0].astype(int)).max() <= 1


def test_save_load_roundtrip_bit_exact(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").is_file() and (tmp_path / "normalization.json").is_file()
    assert list((tmp_path / "denoiser").glob("*.safetensors"))
    loaded = MultisensoryVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    for name in ("denoiser", "action_encoder", "action_warp", "context_encoder"):
        a, b = getattr(pipe, name), getattr(loaded, name)
        assert plain_config(a.config) == plain_config(b.config), name
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), f"{name}.{k}"
    assert plain_config(loaded.scheduler.config) == plain_config(pipe.scheduler.config)
    assert type(loaded.scheduler) is type(pipe.scheduler)
    assert loaded.config.default_num_inference_steps == pipe.config.default_num_inference_steps
    assert loaded.text_encoder is None
    st_a, st_b = pipe.normalization_stats, loaded.normalization_stats
    assert st_a.minimum.keys() == st_b.minimum.keys()
    for k in st_a.minimum:
        assert np.array_equal(st_a.minimum[k], st_b.minimum[k]) and np.array_equal(st_a.maximum[k], st_b.maximum[k])
    ctx, acts = make_inputs()
    assert np.array_equal(
        pipe(context=ctx, actions=acts, generator=gen()).frames,
        loaded(context=ctx, actions=acts, generator=gen()).frames,
    )
    pt_a = pipe(context=ctx, actions=acts, generator=gen(), output_type="pt").frames
    pt_b = loaded(context=ctx, actions=acts, generator=gen(), output_type="pt").frames
    assert torch.equal(pt_a, pt_b)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(MMSimError, match="model_index.json"):
        MultisensoryVideoPipeline.from_pretrained(tmp_path)
    with pytest.raises(MMSimError, match="not a pipeline folder"):
        MultisensoryVideoPipeline.from_pretrained(str(tmp_path / "missing"))


def test_text_conditioning():
    p = MultisensoryVideoPipeline.from_preset(
        "mmsim-tiny", text_encoder="bow", action_encoder={"text_dim": 16}
    )
    randomize_zero_init(p.denoiser)
    p.set_progress_bar_config(disable=True)
    ctx, acts = make_inputs()
    a = p(context=ctx, actions=acts, text=["peel a potato", "open a jar"], generator=gen()).frames
    b = p(context=ctx, actions=acts, text=["slice a cucumber", "open a jar"], generator=gen()).frames
    assert not np.array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])  # each sample reads its own text


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c, a: (c, {**a, "smell": a["emg"]}), r"unknown action modality 'smell'"),
        (lambda c, a: (c, {**a, "emg": a["emg"][:, :, :1]}), r"actions\['emg'\] must have shape \(2, 12, 2, 8\)"),
        (lambda c, a: (c, {**a, "hand_pose": a["hand_pose"][:, :5]}), r"actions\['hand_pose'\] must have shape"),
        (lambda c, a: (c, {**a, "body_pose": a["body_pose"][:1]}), r"actions\['body_pose'\] has batch size 1"),
        (lambda c, a: (c, {**a, "emg": np.where(True, np.nan, a["emg"])}), r"actions\['emg'\] contains NaN or inf"),
        (lambda c, a: (c, {**a, "emg": np.full_like(a["emg"], np.inf)}), r"NaN or inf"),
        (lambda c, a: (c, {**a, "emg": (a["emg"] * 10).astype(np.int64)}), r"actions\['emg'\] must be float32"),
        (lambda c, a: (c.astype(np.float32) / 255, a), r"context must be uint8"),
        (lambda c, a: (c.astype(np.int32) - 300, a), r"context values must be in \[0, 255\]"),
        (lambda c, a: (c[:, :2], a), r"context must have shape \(B, 4, 64, 64, 3\)"),
        (lambda c, a: (c[..., 0], a), r"context must have shape"),
        (lambda c, a: (c.tolist(), a), r"context must be a numpy array or torch tensor"),
        (lambda c, a: (c, [a["emg"]]), r"actions must be a dict"),
    ],
)
def test_validation_errors(pipe, mutate, message):
    ctx, acts = make_inputs()
    ctx, acts = mutate(ctx, acts)
    with pytest.raises(ActionInputError, match=message):
        pipe(context=ctx, actions=acts)


def test_validation_errors_other_arguments(pipe):
    ctx, acts = make_inputs()
    with pytest.raises(ActionInputError, match="no text encoder"):
        pipe(context=ctx, actions=acts, text=["a", "b"])
    with pytest.raises(ActionInputError, match="output_type must be one of"):
        pipe(context=ctx, actions=acts, output_type="pil")
    with pytest.raises(ActionInputError, match=r"action_mask\['emg'\] must have shape \(2,\)"):
        pipe(context=ctx, actions=acts, action_mask={"emg": np.ones(3, dtype=bool)})
    with pytest.raises(ActionInputError, match=r"latents must have shape"):
        pipe(context=ctx, actions=acts, latents=torch.zeros(1, 8, 3, 64, 64))


def test_torch_inputs_accepted(pipe):
    ctx, acts = make_inputs()
    a = pipe(context=ctx, actions=acts, generator=gen()).frames
    b = pipe(
        context=torch.from_numpy(ctx), actions={k: torch.from_numpy(v) for k, v in acts.items()}, generator=gen()
    ).frames
    assert np.array_equal(a, b)


def test_classifier_free_guidance(pipe):
    ctx, acts = make_inputs()
    plain = pipe(context=ctx, actions=acts, generator=gen()).frames
    same = pipe(context=ctx, actions=acts, generator=gen(), guidance_scale=1.0).frames
    cfg = pipe(context=ctx, actions=acts, generator=gen(), guidance_scale=3.0).frames
    null = pipe(context=ctx, actions=None, generator=gen()).frames
    null_cfg = pipe(context=ctx, actions=None, generator=gen(), guidance_scale=0.0).frames
    assert np.array_equal(plain, same)
    assert cfg.shape == plain.shape and not np.array_equal(cfg, plain)
    # guidance 0 is the unconditional branch alone: the all-dropped null embedding.
    assert np.abs(null.astype(int) - null_cfg.astype(int)).max() <= 1


def test_callback_and_previews(pipe):
    ctx, acts = make_inputs()
    seen = []

    def callback(p, i, t, kwargs):
        assert p is pipe
        seen.append((i, int(t), kwargs["x0_preview"].shape, kwargs["x0_preview"].dtype, tuple(kwargs["latents"].shape)))
        return {}

    out = pipe(context=ctx, actions=acts, generator=gen(), num_inference_steps=3, callback_on_step_end=callback)
    assert [s[0] for s in seen] == [0, 1, 2]
    assert all(s[2] == (B, F, S, S, 3) and s[3] == np.uint8 and s[4] == (B, F, 3, S, S) for s in seen)
    assert seen[0][1] > seen[-1][1]  # timesteps go from noisy to clean
    ref = pipe(context=ctx, actions=acts, generator=gen(), num_inference_steps=3).frames
    assert np.array_equal(out.frames, ref)  # an observing callback changes nothing


def test_callback_can_replace_latents(pipe):
    ctx, acts = make_inputs()

    def zero_latents(p, i, t, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])}

    a = pipe(context=ctx, actions=acts, generator=gen(), callback_on_step_end=zero_latents).frames
    b = pipe(context=ctx, actions=acts, generator=gen()).frames
    assert not np.array_equal(a, b)


def test_output_type_pt_and_tuple(pipe):
    ctx, acts = make_inputs()
    np_frames = pipe(context=ctx, actions=acts, generator=gen()).frames
    pt = pipe(context=ctx, actions=acts, generator=gen(), output_type="pt").frames
    assert isinstance(pt, torch.Tensor) and pt.shape == (B, F, 3, S, S) and pt.dtype == torch.float32
    assert 0 <= float(pt.min()) and float(pt.max()) <= 1
    back = (pt * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    assert np.abs(back.astype(int) - np_frames.astype(int)).max() <= 1
    (frames,) = pipe(context=ctx, actions=acts, generator=gen(), return_dict=False)
    assert np.array_equal(frames, np_frames)


def test_num_inference_steps_and_progress_bar(pipe, capsys):
    ctx, acts = make_inputs(b=1)
    pipe.set_progress_bar_config(disable=False, desc="sim")
    try:
        pipe(context=ctx, actions=acts, num_inference_steps=3)
    finally:
        pipe.set_progress_bar_config(disable=True)
    err = capsys.readouterr().err
    assert "sim" in err and "3/3" in err


def test_training_mode_modules_restored(pipe):
    ctx, acts = make_inputs()
    ref = pipe(context=ctx, actions=acts, generator=gen()).frames
    pipe.action_encoder.train()
    try:
        # Dropout/BatchNorm must not make inference random: the pipeline runs its modules in eval.
        out = pipe(context=ctx, actions=acts, generator=gen()).frames
        assert pipe.action_encoder.training
    finally:
        pipe.action_encoder.eval()
    assert np.array_equal(ref, out)


def test_model_index_names_components(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "MultisensoryVideoPipeline"
    assert index["denoiser"][1] == "VideoDenoiser"
    assert index["action_encoder"][1] == "MultisensoryActionEncoder"
    assert index["action_warp"][1] == "ActionWarp"
    assert index["scheduler"] == ["diffusers", "UniPCMultistepScheduler"]


def test_from_preset_validates_name():
    with pytest.raises(ValueError, match="preset must be one of"):
        MultisensoryVideoPipeline.from_preset("mmsim-huge")
