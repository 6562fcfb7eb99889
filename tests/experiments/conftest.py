import pytest


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """Processed clips of three short synthetic recordings (with their oracle sidecars); S02 is held out."""
    from mmsim_core.data.preprocess import PreprocessConfig, preprocess
    from mmsim_core.synth import generate_dataset

    base = tmp_path_factory.mktemp("experiments")
    generate_dataset(base / "raw", subjects=3, seconds=8, seed=1, workers=1)
    preprocess(base / "raw", base / "proc", PreprocessConfig(frame_steps=(1,), stride=8, workers=1))
    return base / "proc"


@pytest.fixture
def untrained_checkpoint(synth, tmp_path):
    """An untrained mmsim-tiny pipeline saved with the synthetic clips' statistics."""
    import torch

    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.data import ClipDataset

    torch.manual_seed(0)
    stats = ClipDataset(synth, "test").stats
    path = tmp_path / "pipe"
    MultisensoryVideoPipeline.from_preset("mmsim-tiny", normalization_stats=stats).save_pretrained(path)
    return str(path)
