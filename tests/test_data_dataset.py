"""ClipDataset item contract, determinism, modality drop, collate, DataLoader workers, errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from fixtures.recordings import write_recording

from mmsim_core import schema
from mmsim_core.data import ClipDataset, PreprocessConfig, collate_clips, preprocess
from mmsim_core.errors import DatasetError


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    write_recording(root / "raw" / "a", subject="S01", seed=1)
    write_recording(root / "raw" / "b", subject="S02", seed=2, tactile=False)
    write_recording(root / "raw" / "c", subject="S03", seed=3, seconds=4.0)
    preprocess(root / "raw", root / "out", PreprocessConfig(size=32, workers=1, shard_size=16))
    return root / "out"


def test_item_contract(processed):
    ds = ClipDataset(processed, split="test")
    assert len(ds) > 0 and len(ds.manifest["splits"]["test"]["shards"]) >= 1
    item = ds[len(ds) - 1]
    assert set(item) == {"context", "future", "actions", "text", "meta"}
    assert item["context"].shape == (4, 32, 32, 3) and item["context"].dtype == np.uint8
    assert item["future"].shape == (8, 32, 32, 3) and item["future"].dtype == np.uint8
    assert set(item["actions"]) == set(schema.MODALITY_NAMES)
    for name, a in item["actions"].items():
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        assert a.shape == (12,) + schema.MODALITIES[name].shape
        assert np.isfinite(a).all()
    assert set(item["text"]) == set(schema.TEXT_KINDS) and all(isinstance(v, str) for v in item["text"].values())
    for key in ("subject", "activity", "source", "start_time_s", "frame_step", "video_frame_indices"):
        assert key in item["meta"]
    assert item["meta"]["subject"] == "S03"
    assert isinstance(ds.stats, schema.NormalizationStats) and "emg" in ds.stats.minimum
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert ds[-1]["meta"]["video_frame_indices"] == item["meta"]["video_frame_indices"]


def test_clips_cross_shards(processed):
    ds = ClipDataset(processed, split="train")
    assert len(ds.manifest["splits"]["train"]["shards"]) > 1  # shard_size 16
    seen = {(it["meta"]["source"], it["meta"]["start_time_s"], it["meta"]["frame_step"]) for it in ds}
    assert len(seen) == len(ds)


def test_absent_modality_left_out(processed):
    ds = ClipDataset(processed, split="train")
    s02 = [ds[i] for i in range(len(ds)) if ds[i]["meta"]["subject"] == "S02"]
    assert s02 and all("hand_force" not in it["actions"] for it in s02)
    only = ClipDataset(processed, split="train", modalities=["emg", "hand_force"])
    assert all(set(it["actions"]) <= {"emg", "hand_force"} for it in only)
    with pytest.raises(ValueError, match="modality must be one of"):
        ClipDataset(processed, modalities=["gaze"])


def test_deterministic(processed):
    a, b = ClipDataset(processed, "train"), ClipDataset(processed, "train")
    for i in (0, 5, len(a) - 1):
        x, y = a[i], b[i]
        np.testing.assert_array_equal(x["context"], y["context"])
        assert x["text"] == y["text"] and x["meta"] == y["meta"]
        for k in x["actions"]:
            np.testing.assert_array_equal(x["actions"][k], y["actions"][k])


def test_modality_drop(processed):
    ds = ClipDataset(processed, "train", modality_drop=0.5, seed=3)
    kept = [tuple(sorted(ds[i]["actions"])) for i in range(len(ds))]
    assert kept == [tuple(sorted(ds[i]["actions"])) for i in range(len(ds))]  # same (seed, index, epoch)
    assert all(len(k) >= 1 for k in kept)  # never all dropped
    full = ClipDataset(processed, "train")
    n_full = sum(len(full[i]["actions"]) for i in range(len(ds)))
    n_kept = sum(len(k) for k in kept)
    assert 0.3 * n_full < n_kept < 0.8 * n_full
    ds.set_epoch(1)
    assert [tuple(sorted(ds[i]["actions"])) for i in range(len(ds))] != kept
    assert ClipDataset(processed, "train", modality_drop=0.5, seed=4)[0]["meta"]["index"] == 0
    # Dropping everything only when asked.
    none = ClipDataset(processed, "train", modality_drop=1.0, drop_all=True)
    assert none[0]["actions"] == {} and sorted(none[0]["meta"]["dropped_modalities"]) == sorted(full[0]["actions"])
    one = ClipDataset(processed, "train", modality_drop=1.0)
    assert len(one[0]["actions"]) == 1
    with pytest.raises(ValueError, match="modality_drop must be in"):
        ClipDataset(processed, modality_drop=1.5)


def test_collate(processed):
    ds = ClipDataset(processed, "train")
    s01 = next(i for i in range(len(ds)) if ds[i]["meta"]["subject"] == "S01")
    s02 = next(i for i in range(len(ds)) if ds[i]["meta"]["subject"] == "S02")
    items = [ds[s01], ds[s02], ds[s01 + 1]]
    batch = collate_clips(items)
    assert batch["context"].shape == (3, 4, 32, 32, 3) and batch["context"].dtype == torch.uint8
    assert batch["future"].shape == (3, 8, 32, 32, 3) and batch["future"].dtype == torch.uint8
    assert set(batch["actions"]) == set(schema.MODALITY_NAMES)
    for name, a in batch["actions"].items():
        assert a.dtype == torch.float32 and a.shape == (3, 12) + schema.MODALITIES[name].shape
    assert batch["action_mask"]["hand_force"].tolist() == [True, False, True]
    assert batch["action_mask"]["emg"].tolist() == [True, True, True]
    assert torch.all(batch["actions"]["hand_force"][1] == 0)
    np.testing.assert_array_equal(batch["actions"]["emg"][1].numpy(), items[1]["actions"]["emg"])
    assert batch["text"]["phrase"] == [it["text"]["phrase"] for it in items]
    assert [m["subject"] for m in batch["meta"]] == ["S01", "S02", "S01"]
    # Only modalities present in at least one item are batched.
    assert set(collate_clips([ds[s02]])["actions"]) == {"hand_pose", "body_pose", "emg"}


def test_dataloader_with_workers(processed):
    ds = ClipDataset(processed, "test")
    ds[0]  # open a handle in the parent: workers must not reuse it
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_clips)
    batches = list(loader)
    assert sum(b["context"].shape[0] for b in batches) == len(ds)
    ref = collate_clips([ds[i] for i in range(4)])
    torch.testing.assert_close(batches[0]["actions"]["body_pose"], ref["actions"]["body_pose"])
    assert torch.equal(batches[0]["future"], ref["future"])


def test_errors(processed, tmp_path):
    with pytest.raises(DatasetError, match=r"split must be one of \['train', 'test'\], got 'val'"):
        ClipDataset(processed, split="val")
    with pytest.raises(DatasetError, match="no manifest.json"):
        ClipDataset(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(processed, bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read manifest"):
        ClipDataset(bad)
    m = json.loads((processed / "manifest.json").read_text())
    del m["splits"]["train"]["shards"]
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="must have 'shards'"):
        ClipDataset(bad)
    shutil.rmtree(bad)
    shutil.copytree(processed, bad)
    (bad / "test" / "shard_0000.h5").unlink()
    with pytest.raises(DatasetError, match="shard test/shard_0000.h5 .* is missing"):
        ClipDataset(bad, "test")
    (bad / "test" / "shard_0000.h5").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot read shard"):
        ClipDataset(bad, "test")[0]
    (bad / "normalization.json").unlink()
    with pytest.raises(DatasetError, match="normalization.json"):
        ClipDataset(bad, "train").stats


def test_clip_meta_matches_the_item_without_reading_frames(tiny_setup):
    ds = ClipDataset(tiny_setup["data"], split="test")
    for i in (0, len(ds) - 1, -1):
        meta = ds.clip_meta(i)
        item = ds[i]["meta"]
        assert meta == item and meta["index"] == (i if i >= 0 else len(ds) - 1)
    with pytest.raises(IndexError, match="out of range"):
        ds.clip_meta(len(ds))


def test_one_shard_writer_for_preprocess_and_exports(processed, tmp_path):
    """Shards written by ClipShardWriter (what preprocess and the studio use) read back item for item."""
    from mmsim_core.data.shards import SHARD_FORMAT, ClipShardWriter, write_manifest

    src = ClipDataset(processed, split="train")
    items = [src[i] for i in range(5)]
    with ClipShardWriter(tmp_path, "train", src.modalities, shard_size=2) as w:
        for it in items:
            w.add(np.concatenate([it["context"], it["future"]]), it["actions"], it["text"], it["meta"])
    assert [s["num_clips"] for s in w.shards] == [2, 2, 1]
    src.stats.save(tmp_path / "normalization.json")
    splits = {"train": {"shards": w.shards, "num_clips": 5}, "test": {"shards": [], "num_clips": 0}}
    write_manifest(tmp_path, {"clip": src.manifest["clip"], "modalities": list(src.modalities), "splits": splits,
                              "stats": "normalization.json"})
    again = ClipDataset(tmp_path, split="train")
    assert again.manifest["format"] == SHARD_FORMAT
    for i, it in enumerate(items):
        got = again[i]
        np.testing.assert_array_equal(got["future"], it["future"])
        assert set(got["actions"]) == set(it["actions"])
        for m, a in it["actions"].items():
            np.testing.assert_array_equal(got["actions"][m], a)
        assert got["text"] == it["text"] and got["meta"]["subject"] == it["meta"]["subject"]
