"""Test-wide settings: CPU only, offline, few threads (CI machines have 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(2)

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEMO_DATA = REPO / "examples" / "demo_data"


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory):
    """A tiny processed dataset (2 subjects x 4 s, written in the real ActionSense layout by
    tests/fixtures) and an untrained mmsim-tiny checkpoint saved beside it."""
    from fixtures.recordings import write_dataset

    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.data import ClipDataset
    from mmsim_core.data.preprocess import PreprocessConfig, preprocess

    base = tmp_path_factory.mktemp("tiny_setup")
    write_dataset(base / "raw", subjects=("S01", "S02"), seconds=4.0)
    preprocess(base / "raw", base / "proc", PreprocessConfig(frame_steps=(1,), stride=6, workers=1))
    ds = ClipDataset(base / "proc", split="test")
    MultisensoryVideoPipeline.from_preset("mmsim-tiny", normalization_stats=ds.stats).save_pretrained(base / "ckpt")
    return {"data": base / "proc", "ckpt": base / "ckpt", "num_test": len(ds)}


@pytest.fixture(scope="session")
def demo_tiny_checkpoint(tmp_path_factory):
    """An untrained mmsim-tiny pipeline saved with the bundled demo clips' statistics (fast to run)."""
    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.data import ClipDataset

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    stats = ClipDataset(DEMO_DATA, split="test").stats
    MultisensoryVideoPipeline.from_preset("mmsim-tiny", normalization_stats=stats).save_pretrained(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def studio(demo_tiny_checkpoint):
    """The studio running on a free loopback port with the tiny checkpoint and the demo clips:
    (url, engine). Shared by the API-client and browser tests."""
    from mmsim.app.cli import create_app, launch

    demo, engine = create_app(str(demo_tiny_checkpoint), str(DEMO_DATA))
    port = _free_port()
    launch(demo, "127.0.0.1", port, concurrency=4, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/", engine
    demo.close()


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """Processed clips of three short synthetic recordings (with their oracle sidecars); S02 is held out."""
    from mmsim_core.data.preprocess import PreprocessConfig, preprocess
    from mmsim_core.synth import generate_dataset

    base = tmp_path_factory.mktemp("synth")
    generate_dataset(base / "raw", subjects=3, seconds=8, seed=1, workers=1)
    preprocess(base / "raw", base / "proc", PreprocessConfig(frame_steps=(1,), stride=8, workers=1))
    return base / "proc"


@pytest.fixture(scope="session")
def tiny_proposer(synth, tmp_path_factory):
    """A tiny action proposer trained a few steps on the synthetic clips (its final pipeline folder)."""
    from mmsim_cli import main

    out = tmp_path_factory.mktemp("proposer") / "run"
    code = main(["proposer", "train", "--data", str(synth), "--out", str(out), "--width", "tiny", "--max-steps", "3",
                 "--batch-size", "4"])
    assert code == 0
    return str(out / "final")


@pytest.fixture
def untrained_checkpoint(synth, tmp_path):
    """An untrained mmsim-tiny pipeline saved with the synthetic clips' statistics."""
    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.data import ClipDataset

    torch.manual_seed(0)
    stats = ClipDataset(synth, "test").stats
    path = tmp_path / "pipe"
    MultisensoryVideoPipeline.from_preset("mmsim-tiny", normalization_stats=stats).save_pretrained(path)
    return str(path)
