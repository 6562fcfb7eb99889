"""Edit families: each changes only its modality, only future steps, stays in range, is deterministic."""

import logging

import numpy as np
import pytest

from mmsim_core import schema
from mmsim_core.errors import ActionInputError
from mmsim_core.synth import kinematics as kin
from mmsim_core.synth.edits import (
    EDIT_FAMILIES,
    EMG_REST,
    FAMILY_MODALITY,
    TACTILE_UNTOUCHED,
    VALID_RANGE,
    apply_edit,
    random_edit_kwargs,
)

H, T = 4, 12


def _hands(grip, yaw=0.3, pitch=0.2, roll=-0.1, scale=1.1) -> np.ndarray:
    """Raw hand_pose (T, 2, 24, 3) of the world's hand model with finger closure ``grip`` (T,)."""
    pose = np.zeros((T, 2, 24, 3), np.float32)
    for s in range(2):
        seg = kin.hand_fk(grip, np.full(T, yaw), np.full(T, pitch), np.full(T, roll), s, scale)
        pose[:, s] = seg[:, list(schema.HAND_POSE_INDICES)]
    return pose


def _raw(seed=0) -> dict:
    rng = np.random.default_rng(seed)
    bp = rng.normal(0, 5, size=(T, 28, 3)).astype(np.float32)
    for p, x in ((i, -20.0) for i, s in enumerate(schema.BODY_POSE_INDICES) if s == 12):  # Left Upper Arm
        bp[:, p] = [x, 0.0, 40.0]
    for p in (i for i, s in enumerate(schema.BODY_POSE_INDICES) if s == 8):  # Right Upper Arm
        bp[:, p] = [20.0, 0.0, 40.0]
    bp += np.linspace(0, 10, T, dtype=np.float32)[:, None, None]  # the body moves, so timing edits show
    return {
        "hand_pose": _hands(np.linspace(0.2, 0.6, T)),
        "body_pose": bp,
        "emg": rng.uniform(3, 60, size=(T, 2, 8)).astype(np.float32),
        "hand_force": rng.uniform(520, 590, size=(T, 2, 32, 32)).astype(np.float32),
    }


def _other():
    return {**_raw(1), "hand_pose": _hands(np.linspace(0.9, 0.1, T), yaw=-0.4)}


@pytest.mark.parametrize("family", EDIT_FAMILIES)
def test_family_changes_only_future_steps_of_its_modality(family):
    raw = _raw()
    edited = apply_edit(family, raw, H, other=_other())
    m = FAMILY_MODALITY[family]
    for name in schema.MODALITY_NAMES:
        if name != m:
            assert edited[name] is raw[name], f"{family} touched {name}"
    assert np.array_equal(edited[m][:H], raw[m][:H]), f"{family} touched the context steps"
    assert not np.allclose(edited[m][H:], raw[m][H:]), f"{family} changed nothing"
    assert edited[m].dtype == np.float32 and edited[m].shape == raw[m].shape
    assert np.isfinite(edited[m]).all()
    # the edit ramps in: the first edited step moves less than the fully edited ones
    first, later = (np.abs(edited[m][t] - raw[m][t]).mean() for t in (H, H + 3))
    assert 0 < first < later or family == "body_timing"  # a timing change grows with the motion itself
    if m in VALID_RANGE:
        lo, hi = VALID_RANGE[m]
        assert edited[m].min() >= min(lo, raw[m].min()) and edited[m].max() <= max(hi, raw[m].max())
    again = apply_edit(family, raw, H, other=_other())
    assert np.array_equal(again[m], edited[m]), f"{family} is not deterministic"
    assert raw[m] is not edited[m] and np.array_equal(_raw()[m], raw[m]), f"{family} changed its input"


@pytest.mark.parametrize("family", EDIT_FAMILIES)
def test_end_bounds_the_edit(family):
    raw = _raw()
    edited = apply_edit(family, raw, H, end=H + 5, other=_other())[FAMILY_MODALITY[family]]
    m = FAMILY_MODALITY[family]
    assert np.array_equal(edited[H + 5:], raw[m][H + 5:]) and np.array_equal(edited[:H], raw[m][:H])
    assert not np.allclose(edited[H:H + 5], raw[m][H:H + 5])


def test_grip_edits_in_adc_units():
    raw = _raw()
    released = apply_edit("release_grip", raw, H, side="left")["hand_force"]
    assert np.allclose(released[H + 1:, 0], np.minimum(raw["hand_force"][H + 1:, 0], TACTILE_UNTOUCHED))
    assert np.array_equal(released[:, 1], raw["hand_force"][:, 1])  # one hand only
    half = raw["hand_force"][H, 0] - 0.5 * np.clip(raw["hand_force"][H, 0] - TACTILE_UNTOUCHED, 0, None)
    assert np.allclose(released[H, 0], half)  # ramped in
    squeezed = apply_edit("squeeze", raw, H)["hand_force"]
    assert (squeezed[H + 1:] >= np.minimum(raw["hand_force"][H + 1:] + 20, schema.TACTILE_CLIP[1]) - 1e-3).all()
    assert squeezed.max() == schema.TACTILE_CLIP[1]  # pressed to the top of the range, clipped there


def test_release_grip_defaults_to_the_gripping_hand():
    raw = _raw()
    force = raw["hand_force"].copy()
    force[:, 1] = TACTILE_UNTOUCHED  # the right hand touches nothing; the left one presses
    raw = {**raw, "hand_force": force}
    released = apply_edit("release_grip", raw, H)["hand_force"]
    assert np.array_equal(released[:, 1], force[:, 1]) and not np.allclose(released[H + 1:, 0], force[H + 1:, 0])
    force = force[:, ::-1].copy()  # now only the right hand presses
    released = apply_edit("release_grip", {**raw, "hand_force": force}, H)["hand_force"]
    assert np.array_equal(released[:, 0], force[:, 0]) and not np.allclose(released[H + 1:, 1], force[H + 1:, 1])


def test_emg_edits(caplog):
    raw = _raw()
    with caplog.at_level(logging.INFO, logger="mmsim.synth.edits"):
        up = apply_edit("emg_up", raw, H)["emg"]
    expected = np.clip(raw["emg"][H + 1:] * 3, 0, VALID_RANGE["emg"][1])
    assert np.allclose(up[H + 1:], expected)
    assert "emg_up" in caplog.text and "clipped" in caplog.text  # 60 x 3 > 127: the reason is logged
    rest = apply_edit("emg_rest", raw, H, side="right")["emg"]
    assert np.allclose(rest[H + 1:, 1], EMG_REST) and np.array_equal(rest[:, 0], raw["emg"][:, 0])


@pytest.mark.parametrize("family,grip", [("fingers_open", 0.0), ("fingers_closed", 1.0)])
def test_finger_edits_keep_the_hand_frame(family, grip):
    raw = _raw()
    out = apply_edit(family, raw, H, side="right")["hand_pose"]
    target = _hands(np.full(T, grip))  # same orientation and size, fingers straight / curled
    assert np.abs(out[H + 1:, 1] - target[H + 1:, 1]).max() < 1e-3
    assert np.array_equal(out[:, 0], raw["hand_pose"][:, 0])
    assert np.abs(out[..., 0, :]).max() == 0  # carpus-relative: the Carpus stays at the origin
    seg = kin.hand_segments(out[:, 1])
    tips = np.linalg.norm(kin.fingertips(seg)[:, 1:], axis=-1).mean()  # carpus to fingertip distance
    raw_tips = np.linalg.norm(kin.fingertips(kin.hand_segments(raw["hand_pose"][:, 1]))[:, 1:], axis=-1).mean()
    assert (tips > raw_tips) == (family == "fingers_open")


def test_hand_pose_swap_takes_the_other_clip():
    raw, other = _raw(), _other()
    out = apply_edit("hand_pose_swap", raw, H, other=other)["hand_pose"]
    assert np.allclose(out[H + 1:], other["hand_pose"][H + 1:])
    assert np.allclose(apply_edit("hand_pose_swap", raw, H, other=other["hand_pose"])["hand_pose"], out)
    with pytest.raises(ActionInputError, match="other="):
        apply_edit("hand_pose_swap", raw, H)
    with pytest.raises(ActionInputError, match="other hand_pose"):
        apply_edit("hand_pose_swap", raw, H, other=other["hand_pose"][:5])


def test_body_edits():
    raw = _raw()
    moved = [i for i, s in enumerate(schema.BODY_POSE_INDICES) if s in (9, 10)]  # Right Forearm, Right Hand
    diff = apply_edit("hand_shift", raw, H)["body_pose"] - raw["body_pose"]
    assert np.allclose(diff[H + 1:, moved], [10.0, 0.0, 0.0], atol=1e-4)  # outward = the body's right
    assert np.allclose(diff[H, moved], [5.0, 0.0, 0.0], atol=1e-4)
    assert np.abs(np.delete(diff, moved, axis=1)).max() == 0
    left = apply_edit("hand_shift", raw, H, side="left", strength=-0.5)["body_pose"] - raw["body_pose"]
    left_pts = [i for i, s in enumerate(schema.BODY_POSE_INDICES) if s in (13, 14)]
    assert np.allclose(left[-1, left_pts], [5.0, 0.0, 0.0], atol=1e-4)  # negative strength: inward
    delayed = apply_edit("body_timing", raw, H)["body_pose"]
    assert np.allclose(delayed[H + 1:], raw["body_pose"][H - 2:T - 3], atol=1e-4)
    advanced = apply_edit("body_timing", raw, H, strength=-1.0)["body_pose"]
    assert np.allclose(advanced[H + 1:T - 3], raw["body_pose"][H + 4:], atol=1e-4)


def test_random_edit_kwargs_are_valid_and_seeded():
    for family in EDIT_FAMILIES:
        draws = [random_edit_kwargs(np.random.default_rng(i), family, T, H) for i in range(20)]
        assert draws[3] == random_edit_kwargs(np.random.default_rng(3), family, T, H)
        for kw in draws:
            assert H <= kw["start"] <= T - 2 and np.isfinite(kw["strength"])
            m, s = FAMILY_MODALITY[family], kw["start"]
            assert np.array_equal(apply_edit(family, _raw(), other=_other(), **kw)[m][:s], _raw()[m][:s])
        assert len({kw["start"] for kw in draws}) > 1


def test_bad_arguments_are_refused_by_name():
    raw = _raw()
    with pytest.raises(ActionInputError, match="edit family must be one of"):
        apply_edit("wiggle", raw, H)
    with pytest.raises(ActionInputError, match="side must be one of"):
        apply_edit("squeeze", raw, H, side="middle")
    with pytest.raises(ActionInputError, match="side must be None"):
        apply_edit("body_timing", raw, H, side="left")
    with pytest.raises(ActionInputError, match="start must be"):
        apply_edit("emg_up", raw, T + 1)
    with pytest.raises(ActionInputError, match="does not have|do not have"):
        apply_edit("emg_up", {"hand_pose": raw["hand_pose"]}, H)
