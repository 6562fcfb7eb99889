"""Counterfactual control fidelity: the edits, and the evaluation against the synthetic oracle."""

import numpy as np
import pytest
import torch

from mmsim_core import schema
from mmsim.training.control import (
    ARM_POINTS,
    BODY_PARTS,
    EDITS,
    _CHAIN_POS,
    control_fidelity,
    FEASIBLE_RATIO,
    GOAL_MARGIN_DB,
    GOAL_MAX_DROP_DB,
    delay_body,
    extrapolate_future,
    firm_grip,
    hold_body_points,
    hold_future,
    margin_ceiling,
    markdown,
    modality_information,
    scale_force,
    shift_hand,
    zero_emg,
)

H, T = 4, 12


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from mmsim_core.data.preprocess import PreprocessConfig, preprocess
    from mmsim_core.synth import generate_dataset

    base = tmp_path_factory.mktemp("control")
    generate_dataset(base / "raw", subjects=3, seconds=8, seed=1, workers=1)
    preprocess(base / "raw", base / "proc", PreprocessConfig(frame_steps=(1,), stride=8, workers=1))
    return base / "proc"


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


def test_feasible_ratio_is_where_both_goals_are_just_met():
    # A model errs e0 with every modality; without m it errs e0 + L_unknown, with only m e0 + L_alone.
    e0 = 0.003
    unknown = (10 ** (GOAL_MAX_DROP_DB / 10) - 1) * e0  # the drop goal exactly
    alone = unknown / FEASIBLE_RATIO
    assert 10 * np.log10((e0 + unknown) / e0) == pytest.approx(GOAL_MAX_DROP_DB)
    assert 10 * np.log10((e0 + alone) / e0) == pytest.approx(GOAL_MARGIN_DB)  # the margin goal exactly
    assert 0.45 < FEASIBLE_RATIO < 0.5


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


def test_margin_ceiling_fills_exactly_the_pixels_the_hands_decide(synth, tmp_path):
    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.data import ClipDataset

    torch.manual_seed(0)
    stats = ClipDataset(synth, "test").stats
    ckpt = str(tmp_path / "pipe")
    MultisensoryVideoPipeline.from_preset("mmsim-tiny", normalization_stats=stats).save_pretrained(ckpt)
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
])
def test_margin_ceiling_rejects_bad_arguments(synth, kwargs, message):
    from mmsim_core.errors import MMSimError

    with pytest.raises(MMSimError, match=message):
        margin_ceiling(["unused"], str(synth), **kwargs)


def test_margin_ceiling_needs_a_checkpoint(synth):
    from mmsim_core.errors import MMSimError

    with pytest.raises(MMSimError, match="at least one checkpoint"):
        margin_ceiling([], str(synth))


def test_bench_margin_ceiling_prints_and_writes_the_report(synth, tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.data import ClipDataset

    spec = importlib.util.spec_from_file_location(
        "bench_margin_ceiling", Path(__file__).resolve().parent.parent / "benchmarks" / "bench_margin_ceiling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ckpt = str(tmp_path / "pipe")
    MultisensoryVideoPipeline.from_preset("mmsim-tiny", normalization_stats=ClipDataset(synth, "test").stats).save_pretrained(ckpt)
    out = tmp_path / "ceiling.json"
    assert bench.main([ckpt, "--data", str(synth), "--clips", "2", "--modalities", "hand_pose", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["num_clips"] == 2 and report["modalities"] == ["hand_pose"]
    gain = report["checkpoints"][ckpt]["all"]["ceiling_gain"]
    assert f"{gain:+6.2f}" in printed and "share of future pixels" in printed
