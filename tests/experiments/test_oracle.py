"""The oracle's analyses: how much of the video each modality decides, and the margin ceiling of a checkpoint."""

import json

import numpy as np
import pytest

from mmsim_core import schema
from mmsim_core.errors import MMSimError
from mmsim.training.experiments.margin_ceiling import main as margin_ceiling_main
from mmsim.training.experiments.margin_ceiling import margin_ceiling
from mmsim.training.experiments.modality_information import (
    ARM_POINTS,
    BODY_PARTS,
    extrapolate_future,
    hold_body_points,
    hold_future,
    modality_information,
)
from mmsim.training.experiments.modality_information import main as modality_information_main
from mmsim.training.experiments.targets import FEASIBLE_RATIO

H, T = 4, 12


def _raw(seed=0) -> dict:
    """Random raw trajectories of every modality, T steps of which the first H are history."""
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(T, *schema.MODALITIES[m].shape)).astype(np.float32) for m in schema.MODALITY_NAMES}


def test_hold_future_freezes_one_modality_after_the_history():
    raw = _raw(3)
    held = hold_future(raw, H, "emg")
    assert np.array_equal(held["emg"][:H], raw["emg"][:H])
    assert np.array_equal(held["emg"][H:], np.broadcast_to(raw["emg"][H - 1], held["emg"][H:].shape))
    assert all(held[m] is raw[m] for m in schema.MODALITY_NAMES if m != "emg")
    assert not np.array_equal(raw["emg"][H:], held["emg"][H:])  # the input is left alone


def test_extrapolate_future_continues_poses_at_their_last_velocity_and_holds_signals():
    raw = _raw(4)
    out = extrapolate_future(raw, H, "body_pose")
    v = raw["body_pose"][H - 1] - raw["body_pose"][H - 2]
    assert np.array_equal(out["body_pose"][:H], raw["body_pose"][:H])
    for k in range(1, T - H + 1):
        np.testing.assert_allclose(out["body_pose"][H - 1 + k], raw["body_pose"][H - 1] + k * v, rtol=1e-5, atol=1e-5)
    assert all(out[m] is raw[m] for m in schema.MODALITY_NAMES if m != "body_pose")
    # Tactile and EMG signals are not extrapolated: they are held.
    assert np.array_equal(extrapolate_future(raw, H, "emg")["emg"], hold_future(raw, H, "emg")["emg"])


def test_modality_information_from_the_oracle(synth):
    r = modality_information(str(synth), "test", clips=3)
    assert r["num_clips"] == 3 and set(r["held"]) == set(schema.MODALITY_NAMES)
    # The camera rides on the body: holding body pose changes every clip's future.
    assert r["held"]["body_pose"]["visible_clips"] == 3 and r["held"]["body_pose"]["psnr_pooled"] < 40
    for x in [*r["held"].values(), *r["extrapolated"].values(), *r["alone"].values(), r["every_modality_held"],
              r["copy_last_frame"]]:
        assert x["mse"] >= 0 and np.isfinite(x["psnr_pooled"]) and 0 <= x["visible_clips"] <= 3
    # Holding everything costs at least as much as holding the body alone (up to rendering noise).
    assert r["every_modality_held"]["mse"] >= 0.5 * r["held"]["body_pose"]["mse"] > 0
    assert set(r["extrapolated"]) == {"body_pose", "hand_pose"} and set(r["guess"].values()) <= {"hold", "extrapolate"}
    # Knowing only hand force leaves the camera and the arms to guess: that costs far more than not knowing force.
    f = r["feasibility"]
    force = f["modalities"]["hand_force"]
    assert force["alone_mse"] > force["unknown_mse"] and force["ratio"] < 1
    assert force["unknown_mse"] <= r["held"]["hand_force"]["mse"]  # the better of the two guesses
    assert f["ratio_required"] == FEASIBLE_RATIO
    assert f["feasible"] == all(x["ratio"] <= FEASIBLE_RATIO for x in f["modalities"].values())
    # Against a text row (no trajectory known): body pose decides most of what the actions decide.
    body = f["modalities"]["body_pose"]["vs_text"]
    assert body["nothing_known_mse"] == r["every_modality_held"]["mse"]
    assert body["ratio"] == pytest.approx(f["modalities"]["body_pose"]["unknown_mse"] / body["nothing_known_mse"])
    assert f["feasible_vs_text"] == all(x["vs_text"]["ratio"] <= FEASIBLE_RATIO for x in f["modalities"].values())
    assert set(r["body_parts"]) == {"arms", "camera and trunk"}
    assert r["body_parts"]["camera and trunk"]["visible_clips"] == 3  # the head camera moves in every clip


def test_hold_body_points_freezes_only_those_points():
    raw = _raw(5)
    out = hold_body_points(raw, H, ARM_POINTS)
    bp, orig = out["body_pose"], raw["body_pose"]
    assert len(ARM_POINTS) == 4 and set(ARM_POINTS) | set(BODY_PARTS["camera and trunk"]) == set(range(28))
    assert np.array_equal(bp[H:, list(ARM_POINTS)], np.broadcast_to(orig[H - 1, list(ARM_POINTS)], bp[H:, list(ARM_POINTS)].shape))
    others = list(BODY_PARTS["camera and trunk"])
    assert np.array_equal(bp[:, others], orig[:, others]) and np.array_equal(bp[:H], orig[:H])


def test_margin_ceiling_fills_exactly_the_pixels_the_hands_decide(synth, untrained_checkpoint):
    ckpt = untrained_checkpoint
    r = margin_ceiling([ckpt], str(synth), "test", clips=3)
    assert r["num_clips"] == 3 and r["modalities"] == ["hand_pose", "emg", "hand_force"]
    frac = r["mask_fraction"]
    assert 0 < frac["all"] < 1 and all(frac[m] <= frac["all"] + 1e-12 for m in r["modalities"])
    c = r["checkpoints"][ckpt]
    for x in [c["all"], *c["per_modality"].values()]:
        assert x["ceiling_psnr"] >= x["model_psnr"] and 0 <= x["share_of_mse_in_mask"] <= 1
        # the pixels in the mask become exact, the rest keep their error
        assert x["ceiling_mse"] == pytest.approx((1 - x["share_of_mse_in_mask"]) * x["model_mse"], rel=1e-4)
    assert c["all"]["ceiling_gain"] >= max(x["ceiling_gain"] for x in c["per_modality"].values()) - 1e-9
    assert c["all"]["ceiling_gain"] > 0  # moving hands change pixels the last frame gets wrong

    none = margin_ceiling([ckpt], str(synth), "test", clips=3, modalities=["emg"], threshold=255, dilate=0)
    assert none["mask_fraction"]["all"] == 0
    assert none["checkpoints"][ckpt]["all"]["ceiling_gain"] == 0 and none["checkpoints"][ckpt]["all"]["share_of_mse_in_mask"] == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"modalities": ["gaze"]}, "modalities must be"),
    ({"modalities": []}, "modalities must be"),
    ({"threshold": -1}, "threshold and dilate"),
    ({"checkpoints": []}, "at least one checkpoint"),
])
def test_margin_ceiling_rejects_bad_arguments(synth, kwargs, message):
    kwargs = {"checkpoints": ["unused"], **kwargs}
    with pytest.raises(MMSimError, match=message):
        margin_ceiling(data=str(synth), **kwargs)


def test_margin_ceiling_command_prints_and_writes_the_report(synth, untrained_checkpoint, tmp_path, capsys):
    ckpt = untrained_checkpoint
    out = tmp_path / "ceiling.json"
    assert margin_ceiling_main([ckpt, "--data", str(synth), "--clips", "2", "--modalities", "hand_pose",
                                "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["num_clips"] == 2 and report["modalities"] == ["hand_pose"]
    gain = report["checkpoints"][ckpt]["all"]["ceiling_gain"]
    assert f"{gain:+.2f}" in printed and "share of future pixels" in printed


def test_modality_information_command_prints_the_ratios(synth, tmp_path, capsys):
    out = tmp_path / "mi.json"
    assert modality_information_main(["--data", str(synth), "--clips", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    ratio = report["feasibility"]["modalities"]["body_pose"]["ratio"]
    assert f"{ratio:.2f}" in printed and "L(only m known)" in printed and "L(nothing known)" in printed
    assert "every modality held" in printed and "issue" not in printed.lower()
