"""mmsim control: which edits the synthetic world shows, and whether a checkpoint follows them."""

import json

import numpy as np
import pytest

from mmsim.training.control import EDITS, control_fidelity, edited_actions, markdown, visibility
from mmsim_cli import main
from mmsim_core import schema
from mmsim_core.synth.edits import EDIT_FAMILIES, FAMILY_MODALITY

POSE_EDITS = ("hand_shift", "body_timing", "fingers_open")


def test_every_family_is_scored_by_default():
    assert EDITS == EDIT_FAMILIES


def test_edited_actions_change_future_steps_of_one_modality():
    rng = np.random.default_rng(0)
    raws = [{m: rng.uniform(530, 560, (12, *schema.MODALITIES[m].shape)).astype(np.float32)
             for m in schema.MODALITY_NAMES} for _ in range(2)]
    for family in EDIT_FAMILIES:
        for raw, edited in zip(raws, edited_actions(family, raws, 4)):
            m = FAMILY_MODALITY[family]
            assert np.array_equal(edited[m][:4], raw[m][:4])
            assert not np.array_equal(edited[m], raw[m]), family
            assert all(edited[o] is raw[o] for o in schema.MODALITY_NAMES if o != m)
    one = edited_actions("hand_pose_swap", raws[:1], 4)[0]["hand_pose"]  # a single clip: its own, backwards
    assert np.allclose(one[6:], raws[0]["hand_pose"][::-1][6:])


def test_visibility_from_the_oracle_alone(synth):
    report = visibility(str(synth), clips=3)
    assert report["num_clips"] == 3 and set(report["edits"]) == set(EDIT_FAMILIES)
    # The de-normalised actions re-render the recorded clip: the oracle matches the video up to mp4 coding.
    assert report["oracle_vs_recorded"]["psnr"] > 30
    for family, r in report["edits"].items():
        assert r["modality"] == FAMILY_MODALITY[family]
        assert 0 <= r["visible_share"] <= 1 and r["visible_clips"] == round(r["visible_share"] * 3)
        assert len(r["change_psnr_per_clip"]) == 3
        assert r["visible_clips"] == sum(p < report["visible_psnr"] for p in r["change_psnr_per_clip"])
    # Moving the hand, re-timing the body or opening the fingers visibly changes what the world shows.
    for family in POSE_EDITS:
        assert report["edits"][family]["visible_clips"] >= 1, family
        assert report["edits"][family]["change_psnr"] < 40, family
    md = markdown(report)
    assert all(f"| {family} (" in md for family in EDIT_FAMILIES) and "Gain" not in md


def test_control_fidelity_of_an_untrained_model(synth, untrained_checkpoint):
    families = ("hand_shift", "release_grip", "body_timing")
    report = control_fidelity(untrained_checkpoint, str(synth), clips=3, num_inference_steps=1, families=families)
    assert report["format"] == "mmsim-control-v2" and report["num_clips"] == 3
    assert list(report["edits"]) == list(families)
    assert 5 < report["reference"]["psnr"] < 60 and 0 < report["reference"]["ssim"] <= 1
    shift = report["edits"]["hand_shift"]
    assert shift["visible_clips"] >= 1
    # An untrained model ignores the actions (zero-initialised output): it cannot follow any edit.
    assert shift["gain_psnr"] == pytest.approx(0.0, abs=1e-6)
    assert shift["delta_cosine"] == 0.0 and shift["clips_following"] == 0
    for family, r in report["edits"].items():
        assert r["gain_psnr_all"] == pytest.approx(0.0, abs=1e-6), family
        assert 5 < r["follow"]["psnr"] < 60 and 0 < r["follow"]["ssim"] <= 1
        if r["visible_clips"] == 0:
            assert r["gain_psnr"] is None and r["delta_cosine"] is None
    md = markdown(report)
    assert "| hand_shift (" in md and "Gain (dB)" in md and "Δ-cosine" in md


def test_control_command_writes_json_and_markdown(synth, untrained_checkpoint, tmp_path, capsys):
    out = tmp_path / "r" / "control.json"
    code = main(["control", untrained_checkpoint, str(synth), "--clips", "2", "--steps", "1",
                 "--families", "hand_shift", "emg_rest", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert list(report["edits"]) == ["hand_shift", "emg_rest"] and report["num_clips"] == 2
    assert "| hand_shift (" in out.with_suffix(".md").read_text()
    assert "Control fidelity" in capsys.readouterr().out

    vis = tmp_path / "vis.json"
    assert main(["control", "visibility", str(synth), "--clips", "2", "--families", "squeeze", "--out", str(vis)]) == 0
    assert json.loads(vis.read_text())["format"] == "mmsim-control-visibility-v1"
    assert "Edit visibility" in vis.with_suffix(".md").read_text()


def _error_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"{prefix}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_control_errors_in_command_line_words(synth, untrained_checkpoint, tiny_setup, tmp_path, capsys):
    data = str(synth)
    assert main(["control", "visibility", data, "--families", "wiggle"]) == 2
    assert "--families: unknown edit family 'wiggle'" in _error_line(capsys, "mmsim control visibility")
    assert main(["control", "visibility", data, "--clips", "0"]) == 2
    assert "--clips must be >= 1" in _error_line(capsys, "mmsim control visibility")
    assert main(["control", untrained_checkpoint, data, "--steps", "0"]) == 2
    assert "--steps must be >= 1" in _error_line(capsys, "mmsim control")
    assert main(["control", str(tmp_path / "nope"), data]) == 1
    assert "nope" in _error_line(capsys, "mmsim control")
    assert main(["control", "visibility", str(tmp_path / "none")]) == 1
    assert "does not exist" in _error_line(capsys, "mmsim control visibility")
    assert main(["control", "visibility", data, "--split", "valid"]) == 1
    assert "'valid'" in _error_line(capsys, "mmsim control visibility")
    # Recordings without the synthetic world's oracle (real ActionSense layout) cannot be re-rendered.
    assert main(["control", "visibility", str(tiny_setup["data"]), "--clips", "1"]) == 1
    assert "needs synthetic recordings with an oracle" in _error_line(capsys, "mmsim control visibility")
    with pytest.raises(SystemExit) as e:
        main(["control", "visibility", "--help"])
    assert e.value.code == 0 and "--families" in capsys.readouterr().out
