"""Crash-safe training: ``mmsim train`` killed (SIGKILL) or out of disk space mid-checkpoint, then resumed.

Every resumed run ends with the same weights as a run that was never interrupted (bit-exact on CPU with a fixed
seed), loses at most one checkpoint interval, and a failed write leaves the previous checkpoint loadable.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmsim_core import MultisensoryVideoPipeline
from mmsim_core.errors import CheckpointError
from mmsim.training.train import TRAINER_STATE, latest_checkpoint, main

import faults

ROOT = Path(__file__).resolve().parents[2]
EVERY = 2  # checkpoint interval (steps)


def _args(data, out, max_steps):
    return ["--config", "tiny", "--data", str(data), "--out", str(out), "--batch-size", "2", "--max-steps",
            str(max_steps), "--set", f"checkpoint_every={EVERY}", "--set", "log_every=1", "--set", "warmup_steps=3"]


def _spawn(fault: str, step: int, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    return subprocess.Popen([sys.executable, str(Path(faults.__file__)), fault, str(step), "--", *argv], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _checkpointed(out: Path) -> int:
    ckpt = latest_checkpoint(out)
    return json.loads((ckpt / TRAINER_STATE).read_text())["step"] if ckpt else 0


def _logged(out: Path) -> int:
    log = out / "log.jsonl"
    lines = [line for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # the kill cut the last line short
            pass
    return max(steps, default=0)


def _assert_same_weights(a: Path, b: Path):
    pa, pb = MultisensoryVideoPipeline.from_pretrained(a), MultisensoryVideoPipeline.from_pretrained(b)
    for name, module in pa.components.items():
        if isinstance(module, torch.nn.Module):
            sa, sb = module.state_dict(), getattr(pb, name).state_dict()
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name


@pytest.fixture(scope="module")
def reference(tiny_setup, tmp_path_factory):
    """An uninterrupted run of 6 steps."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(_args(tiny_setup["data"], out, 6)) == 0
    return out


@pytest.mark.parametrize("point", ["pipeline", pytest.param("optimizer", marks=pytest.mark.slow)])
def test_full_disk_during_a_checkpoint_keeps_the_previous_one(point, tiny_setup, reference, tmp_path, monkeypatch,
                                                               capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as m:  # the same patches as the subprocess runner, in this process
        real_setattr = m.setattr
        import accelerate.utils.other as acc_other
        import diffusers

        import mmsim.training.train as train_mod

        for mod, name in ((acc_other, "safe_save_file"), (torch, "save"), (train_mod, "save_file"),
                          (diffusers.ModelMixin, "save_pretrained"), (train_mod.os, "replace")):
            real_setattr(mod, name, getattr(mod, name))  # restored when the context ends
        faults.arm(f"enospc_{point}", 4)
        assert main(_args(tiny_setup["data"], out, 6)) == 1
    line = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert len(line) == 1 and f"cannot write checkpoint {out / 'checkpoints' / 'checkpoint_4'}" in line[0]
    assert "No space left on device" in line[0] and "checkpoint_2 is intact" in line[0]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint_2"]  # the half-written one removed
    MultisensoryVideoPipeline.from_pretrained(latest_checkpoint(out) / "pipeline")  # still loadable
    assert main(["--out", str(out), "--resume", "--max-steps", "6"]) == 0
    _assert_same_weights(out / "final", reference / "final")


def test_kill_during_a_checkpoint_write_then_resume_is_bit_exact(tiny_setup, reference, tmp_path):
    out = tmp_path / "run"
    proc = _spawn("kill_ema", 4, _args(tiny_setup["data"], out, 6))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert _checkpointed(out) == 2 and (out / "checkpoints" / "checkpoint_4").is_dir()  # half written, no marker
    assert _logged(out) - _checkpointed(out) <= EVERY
    assert main(["--out", str(out), "--resume", "--max-steps", "6"]) == 0
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == list(range(1, 7))
    _assert_same_weights(out / "final", reference / "final")


def test_corrupt_or_pickled_checkpoints_are_named_on_resume(tiny_setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(tiny_setup["data"], out, 2)) == 0
    ckpt = latest_checkpoint(out)
    capsys.readouterr()
    model = ckpt / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-100])  # truncated
    assert main(["--out", str(out), "--resume", "--max-steps", "4"]) == 1
    err = capsys.readouterr().err
    assert f"{model}: not a complete safetensors file" in err and "Traceback" not in err
    model.rename(ckpt / "model.bin")  # a pickle instead: refused, never unpickled
    assert main(["--out", str(out), "--resume", "--max-steps", "4"]) == 1
    assert "model.bin); only safetensors weights are loaded" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="ema.safetensors"):
        from mmsim_core.checkpoint_files import check_safetensors

        check_safetensors(ckpt / "ema.safetensors.missing")


@pytest.mark.slow
def test_random_kills_lose_at_most_one_interval_and_end_bit_exact(tiny_setup, tmp_path):
    """At least 5 SIGKILLs at random moments (fixed seed) plus one in each part of a checkpoint write; each time
    the run is resumed in a new process. The final weights equal an uninterrupted run's."""
    steps = 24
    data = tiny_setup["data"]
    straight = tmp_path / "straight"
    proc = _spawn("none", 0, _args(data, straight, steps))
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    out = tmp_path / "run"
    rng = random.Random(26)
    plan = [("kill_" + p, 0) for p in faults.POINTS] + [("random", 0)] * 6
    lost, kills = [], 0
    for fault, _ in plan:
        done = _checkpointed(out)
        if done >= steps:
            break
        argv = _args(data, out, steps) + (["--resume"] if out.exists() else [])
        at = done + EVERY
        proc = _spawn(fault if fault != "random" else "none", at, argv)
        if fault == "random":  # once training is under way, at a random moment
            start = _logged(out)
            deadline = time.time() + 300
            while proc.poll() is None and _logged(out) <= start and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
            proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=600)
        if rc == 0:
            break
        assert rc == -signal.SIGKILL, proc.stderr.read()
        kills += 1
        lost.append(_logged(out) - _checkpointed(out))
        assert lost[-1] <= EVERY, (fault, lost)
    else:
        proc = _spawn("none", 0, _args(data, out, steps) + ["--resume"])
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
    assert kills >= 5, kills
    print(f"{kills} kills, steps lost per kill: {lost}")
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == list(range(1, steps + 1))
    _assert_same_weights(out / "final", straight / "final")
