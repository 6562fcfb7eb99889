"""Property-based fuzzing of ``MultisensoryVideoPipeline.__call__`` on an untrained mmsim-tiny checkpoint.

Hypothesis draws the context (shapes, dtypes, numpy or torch, out-of-range integers), the actions (known and
unknown names, wrong batch / steps / feature shapes, float / integer / bool dtypes, NaN, inf, values up to
1e30), the step count (None, small, 0, negative, huge, float, str, bool), guidance scale (negative, NaN, inf),
text, action mask, latents and output type. Each call either returns frames of the promised shape and range,
or raises an ``MMSimError`` whose message names the argument at fault - never another exception, never a
call that runs away (huge step counts are refused before any work). Fixed seeds (``derandomize=True``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim_core import MultisensoryVideoPipeline, schema
from mmsim_core.errors import MMSimError
from mmsim_core.pipelines.multisensory import MAX_INFERENCE_STEPS

FAST = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
FULL = settings(FAST, max_examples=300)
ARGUMENTS = ("context", "actions", "action modality", "num_inference_steps", "guidance_scale", "text",
             "output_type", "action_mask", "latents")


@pytest.fixture(scope="module")
def pipe(demo_tiny_checkpoint):
    return MultisensoryVideoPipeline.from_pretrained(demo_tiny_checkpoint)


@st.composite
def calls(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    # Half the calls are valid in every argument (values may still be extreme but finite): those must render.
    clean = draw(st.booleans())

    def pick(valid: list, invalid: list):
        return draw(st.sampled_from(valid if clean else valid + invalid))

    B = pick([1, 1, 2], [0])
    h, F, S = 4, 8, 64
    ctx_layout = pick(["ok"] * 6, ["frames", "size", "channels", "ndim"])
    shape = {"ok": (B, h, S, S, 3), "frames": (B, h + 1, S, S, 3), "size": (B, h, 32, 32, 3),
             "channels": (B, h, S, S, 1), "ndim": (h, S, S, 3)}[ctx_layout]
    ctx_dtype = pick(["uint8"] * 4 + ["int64"], ["int16", "float32", "bool"])
    ctx = rng.integers(0, 256, shape)
    if ctx_dtype == "int16" and ctx.size:
        ctx = ctx - 300  # out of [0, 255]
    ctx = ctx.astype(ctx_dtype)
    if draw(st.booleans()):
        ctx = torch.from_numpy(ctx)

    actions = {}
    names = list(schema.MODALITIES) + ([] if clean else ["smell"])
    for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
        feat = schema.MODALITIES[name].shape if name in schema.MODALITIES else (3,)
        a_layout = pick(["ok"] * 5, ["batch", "steps", "feature", "flat"])
        a_shape = {"ok": (B, h + F, *feat), "batch": (B + 1, h + F, *feat), "steps": (B, h + F - 1, *feat),
                   "feature": (B, h + F, 5), "flat": (B, h + F, int(np.prod(feat)))}[a_layout]
        a = rng.uniform(0, 1, a_shape)
        kind = pick(["ok"] * 4 + ["x1000", "zero", "-x1000"], ["nan", "inf", "1e30", "-1e30"])
        if a.size:
            a = {"ok": a, "nan": np.where(a > 0.5, np.nan, a), "inf": np.where(a > 0.5, -np.inf, a), "x1000": a * 1e3,
                 "1e30": a * 1e30, "-1e30": -a * 1e30, "zero": a * 0, "-x1000": -a * 1e3}[kind]
        dtype = pick(["float32"] * 4 + ["float64", "float16"], ["int32", "bool"])
        with np.errstate(invalid="ignore", over="ignore"):
            a = a.astype(dtype)
        actions[name] = torch.from_numpy(a) if draw(st.booleans()) else a
    kw = {"context": ctx, "actions": pick([actions, actions, actions, None], ["emg", [1]])}
    kw["num_inference_steps"] = pick([None, 1, 2, 2], [0, -3, 10**9, MAX_INFERENCE_STEPS + 1, 2.5, "2", True])
    kw["guidance_scale"] = pick([1.0, 1.0, 1.0, 2.0, 0.0], [-1.0, float("nan"), float("inf"), "2"])
    kw["text"] = pick([None], [["peel potato"] * max(B, 1), "peel", [3]])  # the tiny model has no text encoder
    # "pt" half the time: its floats show NaN frames that a uint8 cast would hide
    kw["output_type"] = pick(["np", "pt"], ["pil"])
    if draw(st.integers(0, 4)) == 0 and isinstance(kw["actions"], dict) and kw["actions"]:
        name = next(iter(kw["actions"]))
        kw["action_mask"] = pick([{name: np.ones(B, bool)}, {name: np.arange(B) % 2 == 0}],
                                 [{name: np.ones(B + 1, bool)}, {"hand_force_x": np.ones(B, bool)}, [True]])
    if draw(st.integers(0, 4)) == 0:
        lat = torch.randn(max(B, 1), F, 3, S, S)
        kw["latents"] = pick([lat], [lat[:, :1], lat * float("nan")])
    kw["generator"] = torch.Generator().manual_seed(0)
    return kw


def check_call(pipe, kw) -> str:
    t0 = time.perf_counter()
    try:
        out = pipe(**kw)
    except MMSimError as e:
        msg = str(e)
        assert any(a in msg for a in ARGUMENTS), f"error names no argument: {msg}"
        assert "\n" not in msg
        return "error"
    except Exception as e:  # noqa: BLE001 - anything else is a failure of the contract
        raise AssertionError(f"{type(e).__name__} escaped the pipeline: {e}") from e
    finally:
        # A refused call returns at once; a run is at most a few 2-step renders of the tiny model.
        assert time.perf_counter() - t0 < 60, f"call took {time.perf_counter() - t0:.0f} s"
    frames = out.frames
    B = kw["context"].shape[0]
    if kw["output_type"] == "np":
        assert frames.dtype == np.uint8 and frames.shape == (B, pipe.future_frames, 64, 64, 3)
    else:
        assert frames.shape == (B, pipe.future_frames, 3, 64, 64)
        assert torch.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1
    return "frames"


@FAST
@given(kw=calls())
def test_pipeline_call_gives_frames_or_names_the_argument(pipe, kw):
    check_call(pipe, kw)


@pytest.mark.slow
@FULL
@given(kw=calls())
def test_pipeline_call_full(pipe, kw):
    check_call(pipe, kw)


def test_extreme_action_values_are_refused_not_rendered_as_nan(pipe):
    """Found by the fuzz: actions near 1e30 overflowed the encoders and came out as NaN frames."""
    ctx = np.zeros((1, 4, 64, 64, 3), np.uint8)
    for v in (1e30, -3e38):
        with pytest.raises(MMSimError, match=r"actions\['emg'\] reaches .*must stay within \+-10000"):
            pipe(context=ctx, actions={"emg": np.full((1, 12, 2, 8), v, np.float32)}, num_inference_steps=1)
    out = pipe(context=ctx, actions={"emg": np.full((1, 12, 2, 8), 1e3, np.float32)}, num_inference_steps=1,
               output_type="pt")
    assert torch.isfinite(out.frames).all()
    with pytest.raises(MMSimError, match="context has an empty batch"):  # found by the fuzz: int64 min() of nothing
        pipe(context=np.zeros((0, 4, 64, 64, 3), np.int64))


def test_huge_step_counts_are_refused_at_once(pipe):
    ctx = np.zeros((1, 4, 64, 64, 3), np.uint8)
    for steps in (10**9, MAX_INFERENCE_STEPS + 1, 0, -1):
        t0 = time.perf_counter()
        with pytest.raises(MMSimError, match=r"num_inference_steps must be in \[1, 1000\]"):
            pipe(context=ctx, num_inference_steps=steps)
        assert time.perf_counter() - t0 < 1.0
    with pytest.raises(MMSimError, match="num_inference_steps must be an integer"):
        pipe(context=ctx, num_inference_steps=2.5)
