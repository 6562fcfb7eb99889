"""Test-wide settings: CPU only, offline, few threads (CI machines have 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch  # noqa: E402

torch.set_num_threads(2)

import pytest  # noqa: E402


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
