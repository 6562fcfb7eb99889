import json
import shutil
import subprocess
import sys

import pytest

from fixtures.recordings import write_recording
from mmsim_cli import main


def test_console_script_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "mmsim_cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("synth", "preprocess", "convert", "train", "evaluate", "generate", "experiments", "app"):
        assert cmd in out.stdout


def test_preprocess_rejects_missing_folder_with_a_message(tmp_path, capsys):
    code = main(["preprocess", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert code == 1
    assert "nope" in capsys.readouterr().err


def test_delegated_subcommand_gets_leading_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "--help"])
    assert e.value.code == 0
    assert "--index" in capsys.readouterr().out


def _error_line(capsys, command: str) -> str:
    """The one line the command printed for its error (no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"mmsim {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------------
# Usage errors: exit 2, the message names the flag or argument to fix
# ------------------------------------------------------------------------------------------------
def test_every_subcommand_names_the_flag_of_a_usage_error(tiny_setup, tmp_path, capsys):
    data, ckpt = str(tiny_setup["data"]), str(tiny_setup["ckpt"])
    bad_config = tmp_path / "bad.json"
    bad_config.write_text("{not json")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["synth", str(tmp_path / "s"), "--subjects", "0"], "--subjects must be a positive integer"),
        (["synth", str(a_file), "--subjects", "1"], f"OUT {a_file} is a file"),
        (["preprocess", data, str(tmp_path / "p"), "--size", "0"], "--size must be a positive integer"),
        (["preprocess", data, str(tmp_path / "p"), "--frame-steps", "2,2"], "--frame-steps must not repeat"),
        (["preprocess", data, str(tmp_path / "p"), "--test-subjects", "S01,all"], "--test-subjects: 'none' and"),
        (["preprocess", data, str(tmp_path / "p"), "--stats", str(bad_config)], f"--stats: {bad_config}"),
        (["convert", str(tmp_path / "old"), str(tmp_path / "new")], "SRC"),
        (["train", "--config", str(bad_config), "--data", data, "--out", str(tmp_path / "r")], str(bad_config)),
        (["train", "--config", "tiny", "--set", "batch_size=0", "--data", data, "--out", str(tmp_path / "r")],
         "batch_size must be >= 1"),
        (["train", "--config", "no-such-config", "--data", data, "--out", str(tmp_path / "r")], "config must be one of"),
        (["evaluate", ckpt, data, "--drop", "gaze", "--out", str(tmp_path / "r.json")], "in --drop"),
        (["evaluate", ckpt, data, "--split", "val", "--out", str(tmp_path / "r.json")], "--split must be one of"),
        (["generate", ckpt, data, "--index", "100000", "--out", str(tmp_path / "v.mp4")], "--index 100000 out of range"),
        (["generate", ckpt, data, "--index", "0", "--scale", "0", "--out", str(tmp_path / "v.mp4")], "--scale"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        assert expected in _error_line(capsys, argv[0]), argv
    assert not (tmp_path / "r").exists() and not (tmp_path / "v.mp4").exists()


def test_unreadable_configs_name_the_file(tiny_setup, tmp_path, capsys):
    folder = tmp_path / "cfg.json"
    folder.mkdir()
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for cfg in (folder, listing, binary):
        argv = ["train", "--config", str(cfg), "--data", str(tiny_setup["data"]), "--out", str(tmp_path / "r")]
        assert main(argv) == 2
        assert f"config file {cfg}" in _error_line(capsys, "train")


# ------------------------------------------------------------------------------------------------
# Data errors: exit 1, the message names the file
# ------------------------------------------------------------------------------------------------
def test_missing_checkpoints_are_named(tiny_setup, tmp_path, capsys):
    data = str(tiny_setup["data"])
    for argv in (["evaluate", str(tmp_path / "gone"), data, "--out", str(tmp_path / "r.json")],
                 ["generate", str(tmp_path / "gone"), data, "--index", "0", "--out", str(tmp_path / "v.mp4")]):
        assert main(argv) == 1
        assert f"checkpoint folder {tmp_path / 'gone'} does not exist" in _error_line(capsys, argv[0])
    assert main(["train", "--config", "tiny", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "r")]) == 1
    assert "no manifest.json in" in _error_line(capsys, "train")


def test_pickle_and_truncated_checkpoints_are_refused_by_name(tiny_setup, tmp_path, capsys):
    data = str(tiny_setup["data"])
    weights = "denoiser/diffusion_pytorch_model.safetensors"
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_setup["ckpt"], truncated)
    raw = (truncated / weights).read_bytes()
    (truncated / weights).write_bytes(raw[: len(raw) // 2])
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_setup["ckpt"], pickled)
    (pickled / weights).rename(pickled / "denoiser" / "diffusion_pytorch_model.bin")
    for ckpt, expected in ((truncated, f"{truncated / weights}: not a complete safetensors file"),
                           (pickled, "diffusion_pytorch_model.bin: a pickle weight file; only safetensors")):
        assert main(["generate", str(ckpt), data, "--index", "0", "--out", str(tmp_path / "v.mp4")]) == 1
        assert expected in _error_line(capsys, "generate")
    assert not (tmp_path / "v.mp4").exists()


def test_single_subject_needs_a_hold_out_flag_and_gets_one(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_recording(raw, subject="S04", seconds=3.0)
    base = ["preprocess", str(raw), "--frame-steps", "1", "--stride", "6", "--workers", "1"]
    assert main(base[:2] + [str(tmp_path / "a")] + base[2:]) == 2
    line = _error_line(capsys, "preprocess")
    assert "only one subject (S04)" in line and "--test-subjects none" in line and "--test-subjects all" in line

    assert main(base[:2] + [str(tmp_path / "train_only")] + base[2:] + ["--test-subjects", "none"]) == 0
    m = json.loads((tmp_path / "train_only" / "manifest.json").read_text())
    assert m["splits"]["train"]["subjects"] == ["S04"] and m["splits"]["test"]["num_clips"] == 0
    assert m["splits"]["train"]["num_clips"] > 0

    assert main(base[:2] + [str(tmp_path / "b")] + base[2:] + ["--test-subjects", "all"]) == 2
    assert "--test-subjects all" in (line := _error_line(capsys, "preprocess")) and "--stats" in line
    stats = tmp_path / "train_only" / "normalization.json"
    assert main(base[:2] + [str(tmp_path / "test_only")] + base[2:] + ["--test-subjects", "all", "--stats",
                                                                      str(stats)]) == 0
    m = json.loads((tmp_path / "test_only" / "manifest.json").read_text())
    assert m["splits"]["test"]["subjects"] == ["S04"] and m["splits"]["train"]["num_clips"] == 0
    capsys.readouterr()

    # Training on the test-only folder: its train split is empty, said in command-line words.
    argv = ["train", "--config", "tiny", "--data", str(tmp_path / "test_only"), "--out", str(tmp_path / "run")]
    assert main(argv) == 1
    line = _error_line(capsys, "train")
    assert f"--data {tmp_path / 'test_only'}: the 'train' split has no clips" in line and "--test-subjects" in line


def test_empty_train_split_from_maybe_only_recording_is_explained(tmp_path, capsys):
    """The train subject's only activity is rated Maybe: it is skipped, and `mmsim train` says why."""
    raw = tmp_path / "raw"
    write_recording(raw / "a", subject="S01", seconds=3.0, activities=(("Peel a potato", 0.2, 2.8, "Maybe"),))
    write_recording(raw / "b", subject="S02", seconds=3.0, seed=1)
    assert main(["preprocess", str(raw), str(tmp_path / "proc"), "--test-subjects", "S02", "--frame-steps", "1",
                 "--workers", "1"]) == 0  # S01 is skipped, S02 held out: the train split is empty
    m = json.loads((tmp_path / "proc" / "manifest.json").read_text())
    assert "no activities rated Good" in m["recordings"]["skipped"][0]["reason"]
    capsys.readouterr()
    assert main(["train", "--config", "tiny", "--data", str(tmp_path / "proc"), "--out", str(tmp_path / "r")]) == 1
    line = _error_line(capsys, "train")
    assert "'train' split has no clips" in line and "1 recording(s) skipped" in line and "--include-maybe" in line
