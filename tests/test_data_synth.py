"""Integration: the synthetic world's recordings go through the same reader and preprocessing as real ones."""

import json

import numpy as np
import pytest

from mmsim_core import schema
from mmsim_core.data import ActionSenseRecording, ClipDataset, PreprocessConfig, collate_clips, preprocess
from mmsim_core.video import read_video

synth = pytest.importorskip("mmsim_core.synth")
if not hasattr(synth, "generate_dataset"):
    pytest.skip("mmsim_core.synth.generate_dataset not available yet", allow_module_level=True)


@pytest.fixture(scope="module")
def synth_processed(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    # The second subject wears no tactile gloves, as in some real recordings.
    paths = synth.generate_dataset(root / "raw", subjects=2, seconds=8.0, seed=0, workers=1, tactile=[True, False])
    manifest = preprocess(root / "raw", root / "out", PreprocessConfig(size=32, workers=1))
    return root, [str(p) for p in paths], manifest


def test_synth_recordings_read_as_actionsense(synth_processed):
    root, paths, _ = synth_processed
    hdf5 = sorted((root / "raw").rglob("*.hdf5"))
    assert len(hdf5) == 2
    for p in hdf5:
        with ActionSenseRecording(p) as rec:
            assert rec.subject.startswith("S")
            assert rec.activities(), "synthetic recordings must have Good activities"
            rec.validate()
            assert set(rec.available_modalities()) <= set(schema.MODALITY_NAMES)


def test_synth_preprocessed_clips(synth_processed):
    root, _, m = synth_processed
    assert m["recordings"]["skipped"] == []
    assert len(m["splits"]["train"]["subjects"]) == 1 and len(m["splits"]["test"]["subjects"]) == 1
    assert m["splits"]["train"]["num_clips"] > 0 and m["splits"]["test"]["num_clips"] > 0
    assert json.loads((root / "out" / "manifest.json").read_text()) == m
    for split in ("train", "test"):
        ds = ClipDataset(root / "out", split)
        item = ds[len(ds) // 2]
        assert item["context"].shape == (4, 32, 32, 3) and item["future"].shape == (8, 32, 32, 3)
        assert item["actions"], "synthetic clips carry action modalities"
        for name, a in item["actions"].items():
            assert a.shape == (12,) + schema.MODALITIES[name].shape and a.dtype == np.float32
            assert np.isfinite(a).all()
        # The oracle re-renders from meta: the stored frames are exactly the video's frames at these indices.
        video = read_video(item["meta"]["video"], size=32)
        np.testing.assert_array_equal(np.concatenate([item["context"], item["future"]]),
                                      video[item["meta"]["video_frame_indices"]])
        batch = collate_clips([ds[i] for i in range(min(3, len(ds)))])
        assert batch["context"].shape[1:] == (4, 32, 32, 3)
        expect = set(schema.MODALITY_NAMES) - ({"hand_force"} if split == "test" else set())
        assert set(item["actions"]) == expect
    train = ClipDataset(root / "out", "train")
    for name in train.stats.minimum:
        vals = np.stack([train[i]["actions"][name] for i in range(len(train)) if name in train[i]["actions"]])
        assert vals.min() >= -1e-5 and vals.max() <= 1 + 1e-5  # train split spans [0, 1]
