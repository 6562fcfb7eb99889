"""Counterfactual control fidelity: the edits, and the evaluation against the synthetic oracle."""

import numpy as np
import pytest
import torch

from mmsim_core import schema
from mmsim.training.control import (
    EDITS,
    _CHAIN_POS,
    control_fidelity,
    delay_body,
    firm_grip,
    markdown,
    scale_force,
    shift_hand,
    zero_emg,
)

H, T = 4, 12


def _raw(seed=0) -> dict:
    rng = np.random.default_rng(seed)
    raw = {m: rng.normal(size=(T, *schema.MODALITIES[m].shape)).astype(np.float32) for m in schema.MODALITY_NAMES}
    raw["hand_force"] = rng.uniform(520, 560, size=(T, 2, 32, 32)).astype(np.float32)
    bp = raw["body_pose"]
    bp[:, _CHAIN_POS["Left Upper Arm"]] = [-20.0, 0.0, 40.0]  # shoulder line along +x
    bp[:, _CHAIN_POS["Right Upper Arm"]] = [20.0, 0.0, 40.0]
    return raw


def test_edits_change_only_future_steps_of_their_modality():
    raw = _raw()
    for name, (_, fn) in EDITS.items():
        edited = fn(raw, H)
        changed = [m for m in schema.MODALITY_NAMES if not np.array_equal(edited[m], raw[m])]
        assert len(changed) == 1, name
        m = changed[0]
        assert np.array_equal(edited[m][:H], raw[m][:H]), f"{name} touched history steps"


def test_shift_hand_moves_right_forearm_and_hand_along_the_shoulder_line():
    raw = _raw()
    out = shift_hand(raw, H, cm=10.0)
    moved = [p for name in ("Right Forearm", "Right Hand") for p in _CHAIN_POS[name]]
    diff = out["body_pose"] - raw["body_pose"]
    assert np.allclose(diff[-1, moved], [10.0, 0.0, 0.0], atol=1e-4)
    assert np.allclose(diff[H, moved], [10.0 / 3, 0.0, 0.0], atol=1e-4)  # ramped in
    others = [p for p in range(28) if p not in moved]
    assert np.abs(diff[:, others]).max() == 0


def test_force_emg_and_delay_edits():
    raw = _raw()
    lo = schema.TACTILE_CLIP[0]
    released = scale_force(raw, H, 0.0)["hand_force"]
    assert np.all(released[H:] == lo)
    doubled = scale_force(raw, H, 2.0)["hand_force"]
    above = np.clip(raw["hand_force"][H:] - lo, 0, None)
    assert np.allclose(doubled[H:] - lo, 2 * above)
    assert np.all(firm_grip(raw, H)["hand_force"][H:] == schema.TACTILE_CLIP[1])
    assert np.all(zero_emg(raw, H)["emg"][H:] == 0)
    delayed = delay_body(raw, H, steps=3)["body_pose"]
    assert np.array_equal(delayed[H], raw["body_pose"][H - 3])
    assert np.array_equal(delayed[-1], raw["body_pose"][T - 4])


def test_control_fidelity_against_the_oracle(synth, tmp_path):
    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.data import ClipDataset

    torch.manual_seed(0)
    stats = ClipDataset(synth, "test").stats
    MultisensoryVideoPipeline.from_preset("mmsim-tiny", normalization_stats=stats).save_pretrained(tmp_path / "pipe")
    edits = {k: EDITS[k] for k in ("shift hand", "release grip", "delay body")}
    report = control_fidelity(str(tmp_path / "pipe"), str(synth), clips=3, num_inference_steps=1, edits=edits)

    assert report["num_clips"] == 3 and set(report["edits"]) == set(edits)
    # The de-normalised actions re-render the recorded clip: the oracle matches the video up to mp4 coding.
    assert report["oracle_vs_recorded"]["psnr"] > 30
    # Moving the hand or delaying the body visibly changes what the world shows.
    assert report["edits"]["shift hand"]["edit_effect_psnr"] < 40
    assert report["edits"]["delay body"]["visible_clips"] >= 1
    # An untrained model ignores the actions (zero-initialised output): it cannot follow any edit.
    for name, r in report["edits"].items():
        assert r["gain_psnr"] == pytest.approx(0.0, abs=1e-6), name
        assert r["delta_cosine"] == 0.0 and r["clips_following"] == 0
        assert 5 < r["follow"]["psnr"] < 60 and 0 < r["follow"]["ssim"] <= 1
    md = markdown(report)
    assert "| shift hand" in md and "Gain" in md
