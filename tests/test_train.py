"""`mmsim train`: a tiny run that is interrupted (cleanly and by SIGKILL) and resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

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
    assert warp["model"]["action_encoder"]["hand_map_placement"] == "projected_warp"
    assert warp["model"]["denoiser"]["spatial_cells"] == 4
    assert warp["model"]["denoiser"]["target"] == base["model"]["denoiser"]["target"] == "warped_residual"
    assert {k: v for k, v in warp.items() if k != "model"} == {k: v for k, v in base.items() if k != "model"}
    loop = tmp_path / "loop.json"
    loop.write_text(json.dumps({"extends": str(loop)}))
    with pytest.raises(ValueError, match="extends itself"):
        resolve_config(str(loop))


def test_interrupted_run_resumes_where_it_stopped(processed, tmp_path):
    out = tmp_path / "run"
    common = ["--config", "tiny", "--data", str(processed), "--out", str(out), "--set", "log_every=1",
              "--set", "checkpoint_every=2", "--batch-size", "2"]
    assert main(common + ["--max-steps", "3"]) == 0
    assert latest_checkpoint(out).name == "step_0000003"
    saved = json.loads((out / "config.json").read_text())
    assert saved["preset"] == "mmsim-tiny" and saved["checkpoint_every"] == 2

    assert main(["--out", str(out), "--resume", "--max-steps", "5"]) == 0
    assert _steps(out / "log.jsonl") == [1, 2, 3, 4, 5]  # no step repeated, none lost
    state = json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())
    assert state["step"] == 5

    from mmsim_core import MultisensoryVideoPipeline

    pipe = MultisensoryVideoPipeline.from_pretrained(out / "final")
    assert pipe.normalization_stats is not None


@pytest.mark.slow
def test_killed_process_loses_at_most_one_checkpoint_interval(processed, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mmsim.training.train", "--config", "tiny", "--data", str(processed), "--out", str(out),
           "--batch-size", "2", "--max-steps", "400", "--set", "checkpoint_every=2", "--set", "log_every=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "checkpoints" / "step_0000004").exists():
            time.sleep(0.5)
        assert (out / "checkpoints" / "step_0000004").exists(), "no checkpoint appeared"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    last = json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())["step"]
    logged = max(_steps(out / "log.jsonl"))
    assert logged - last <= 2  # at most one checkpoint interval lost
    assert main(["--out", str(out), "--resume", "--max-steps", str(last + 2)]) == 0
    assert json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())["step"] == last + 2
