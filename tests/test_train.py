"""`mmsim train`: a tiny run that is interrupted (cleanly and by SIGKILL) and resumed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from mmsim.training.config import TrainConfig, resolve_config
from mmsim.training.train import latest_checkpoint, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def processed(tiny_setup):
    return tiny_setup["data"]


def _steps(log: Path) -> list[int]:
    return [json.loads(line)["step"] for line in log.read_text().splitlines()]


def test_config_overrides_and_validation():
    cfg = resolve_config("tiny", ["model.action_encoder.fusion=mean", "modalities=[\"emg\"]"], batch_size=2)
    assert cfg.preset == "mmsim-tiny" and cfg.batch_size == 2 and cfg.modalities == ("emg",)
    assert cfg.model == {"action_encoder": {"fusion": "mean"}}
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="unknown config key 'bogus'"):
        resolve_config(None, ["bogus=1"])
    with pytest.raises(ValueError, match="config must be one of"):
        resolve_config("no-such-config")


def test_a_config_that_extends_another_changes_only_what_it_names(tmp_path):
    base = asdict(resolve_config("bench-cpu"))
    warp = asdict(resolve_config("bench-cpu-warp"))
    assert warp["model"]["action_warp"]["hand_placement"] == "projected_warp"
    assert warp["model"]["denoiser"]["spatial_cells"] == 4
    assert warp["model"]["denoiser"]["target"] == base["model"]["denoiser"]["target"] == "warped_residual"
    assert {k: v for k, v in warp.items() if k != "model"} == {k: v for k, v in base.items() if k != "model"}
    loop = tmp_path / "loop.json"
    loop.write_text(json.dumps({"extends": str(loop)}))
    with pytest.raises(ValueError, match="extends itself"):
        resolve_config(str(loop))


def test_init_from_a_pipeline_fine_tunes_and_keeps_added_parts_fresh(tiny_setup, tmp_path, caplog, capsys):
    """--init-from: every tensor of the folder that fits is loaded; a component the new config adds (the
    hand placement map, its denoiser input) starts fresh; a folder that is not a pipeline is a usage error."""
    import logging

    from mmsim_core import MultisensoryVideoPipeline
    from mmsim.training.train import build_simulator, init_from_pipeline

    ckpt = tiny_setup["ckpt"]
    cfg = resolve_config("tiny", ["model.action_warp.hand_map_channels=4", "model.action_warp.hand_map_grid=8"],
                         data=str(tiny_setup["data"]), out=str(tmp_path / "run"), init_from=str(ckpt))
    simulator = build_simulator(cfg)
    with caplog.at_level(logging.INFO, logger="mmsim.train"):
        report = init_from_pipeline(simulator, ckpt)
    source = MultisensoryVideoPipeline.from_pretrained(ckpt)
    theirs, ours = source.denoiser.state_dict(), simulator.denoiser.state_dict()
    same = [k for k in theirs if k in ours and theirs[k].shape == ours[k].shape]
    assert same and all(torch.equal(theirs[k], ours[k]) for k in same)
    assert report["denoiser"]["loaded"] == len(same) and report["action_encoder"]["kept_fresh"] == 0
    assert report["action_warp"]["kept_fresh"] > 0 and "kept fresh" in caplog.text  # the hand map is new
    # The command line: two steps of fine-tuning from the folder, then an invalid folder.
    assert main(["--config", "tiny", "--data", str(tiny_setup["data"]), "--out", str(tmp_path / "cli"),
                 "--max-steps", "2", "--batch-size", "2", "--init-from", str(ckpt)]) == 0
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["init_from"] == str(ckpt)
    assert main(["--config", "tiny", "--data", str(tiny_setup["data"]), "--out", str(tmp_path / "bad"),
                 "--init-from", str(tmp_path)]) == 2
    assert "init_from must be a pipeline folder" in capsys.readouterr().err


def _checkpointed_step(out: Path) -> int:
    ckpt = latest_checkpoint(out)
    return json.loads((ckpt / "trainer_state.json").read_text())["step"] if ckpt else 0


def _records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_interrupted_run_resumes_where_it_stopped_bit_exactly(processed, tmp_path, capsys):
    common = ["--config", "tiny", "--data", str(processed), "--set", "log_every=1", "--set", "checkpoint_every=2",
              "--set", "warmup_steps=4", "--batch-size", "2"]
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert main(common + ["--out", str(straight), "--max-steps", "5"]) == 0

    assert main(common + ["--out", str(out), "--max-steps", "3"]) == 0
    assert latest_checkpoint(out).name == "checkpoint_3"
    saved = json.loads((out / "config.json").read_text())
    assert saved["preset"] == "mmsim-tiny" and saved["checkpoint_every"] == 2
    assert main(common + ["--out", str(out), "--max-steps", "5", "--lr", "1e-3"]) == 2  # never writes over a run
    assert "pass --resume" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text()) == saved
    # A process killed while writing checkpoint 4 leaves a folder without its trainer_state.json:
    # it is never resumed from, and the resumed run writes checkpoint 4 again.
    half = out / "checkpoints" / "checkpoint_4"
    shutil.copytree(out / "checkpoints" / "checkpoint_3" / "pipeline", half / "pipeline")
    assert latest_checkpoint(out).name == "checkpoint_3"

    assert main(["--out", str(out), "--resume", "--max-steps", "5"]) == 0
    assert _steps(out / "log.jsonl") == [1, 2, 3, 4, 5]  # no step repeated, none lost
    state = json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())
    assert state["step"] == 5
    # keep_checkpoints=2: accelerate deleted checkpoints 2 and 3 as 4 and 5 were written.
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["checkpoint_4", "checkpoint_5"]

    # Same seed on CPU: the interrupted run's losses, lr schedule and EMA weights equal the straight run's.
    def untimed(log):
        return [{k: v for k, v in r.items() if k not in ("steps_per_s", "window_s")} for r in _records(log)]

    resumed = untimed(out / "log.jsonl")
    assert resumed == untimed(straight / "log.jsonl")
    # lr logged after step s is the next step's: lr * min(1, (s + 1) / warmup_steps).
    assert [r["lr"] for r in resumed] == pytest.approx([1e-4 * min(1.0, (s + 1) / 4) for s in range(1, 6)])

    from mmsim_core import MultisensoryVideoPipeline

    pipe = MultisensoryVideoPipeline.from_pretrained(out / "final")
    assert pipe.normalization_stats is not None
    reference = MultisensoryVideoPipeline.from_pretrained(straight / "final")
    modules = {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert "denoiser" in modules
    for name, module in modules.items():
        a, b = module.state_dict(), getattr(reference, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
def test_killed_process_loses_at_most_one_checkpoint_interval(processed, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mmsim.training.train", "--config", "tiny", "--data", str(processed), "--out", str(out),
           "--batch-size", "2", "--max-steps", "400", "--set", "checkpoint_every=2", "--set", "log_every=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.time() + 300
        while time.time() < deadline and _checkpointed_step(out) < 4:
            time.sleep(0.5)
        assert _checkpointed_step(out) >= 4, "no checkpoint appeared"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    last = json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())["step"]
    logged = max(_steps(out / "log.jsonl"))
    assert logged - last <= 2  # at most one checkpoint interval lost
    assert main(["--out", str(out), "--resume", "--max-steps", str(last + 2)]) == 0
    assert json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())["step"] == last + 2


def test_resume_refuses_another_config(tiny_setup, tmp_path, capsys):
    from mmsim.training.train import main

    out = tmp_path / "run"
    assert main(["--config", "tiny", "--data", str(tiny_setup["data"]), "--out", str(out), "--max-steps", "2"]) == 0
    before = (out / "config.json").read_text()
    assert main(["--config", "demo-cpu", "--out", str(out), "--resume"]) == 2
    assert "--config with --resume" in capsys.readouterr().err
    assert (out / "config.json").read_text() == before  # the run's config is untouched


def test_resume_with_the_starting_command_is_accepted(tiny_setup, tmp_path):
    """Re-running the command that started a run, plus --resume, continues it (same config, same overrides)."""
    from mmsim.training.train import main

    out = tmp_path / "run"
    argv = ["--config", "tiny", "--data", str(tiny_setup["data"]), "--out", str(out), "--set", "log_every=1"]
    assert main(argv + ["--max-steps", "2"]) == 0
    assert main(argv + ["--max-steps", "3", "--resume"]) == 0
    assert json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())["step"] == 3
