"""mmsim preprocess on small recordings in the real ActionSense layout (tests/fixtures)."""

import json
import shutil

import h5py
import numpy as np
import pytest
from fixtures.recordings import write_dataset, write_recording

from mmsim_core import schema
from mmsim_core.data import ClipDataset, PreprocessConfig, preprocess
from mmsim_core.data.actionsense import ActionSenseRecording, align_modalities
from mmsim_core.data.preprocess import clip_windows
from mmsim_core.data.text import describe, verb_phrase
from mmsim_core.errors import DatasetError

CFG = dict(size=32, workers=1, shard_size=40)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """Three subjects; S02 lacks the tactile gloves. Default split holds out S03."""
    root = tmp_path_factory.mktemp("pp")
    raw = root / "raw"
    write_recording(raw / "a", subject="S01", seed=1)
    write_recording(raw / "b", subject="S02", seed=2, tactile=False, grip_side="right")
    write_recording(raw / "c", subject="S03", seed=3)
    manifest = preprocess(raw, root / "out", PreprocessConfig(**CFG))
    return raw, root / "out", manifest


def test_config_validates_early():
    with pytest.raises(ValueError, match="frame_steps must be a non-empty list of positive integers"):
        PreprocessConfig(frame_steps=(0, 1))
    with pytest.raises(ValueError, match="size must be a positive integer, got -1"):
        PreprocessConfig(size=-1)
    with pytest.raises(ValueError, match="compression must be one of"):
        PreprocessConfig(compression="zstd")
    assert PreprocessConfig(test_subjects="5, S6").test_subjects == ("S05", "S06")


def test_clip_windows():
    t = np.arange(30) / 30.0
    w = clip_windows(t, 0.0, 29 / 30, length=12, stride=4, step=2)  # 15 sampled frames -> starts 0
    assert w.tolist() == [list(range(0, 24, 2))]
    w = clip_windows(t, 0.0, 1.0, length=12, stride=4, step=1)
    assert w[:, 0].tolist() == [0, 4, 8, 12, 16] and (np.diff(w, axis=1) == 1).all()
    assert clip_windows(t, 0.0, 0.2, 12, 4, 1).shape == (0, 12)


def test_manifest_and_shards(processed):
    raw, out, m = processed
    assert m == json.loads((out / "manifest.json").read_text())
    assert m["format"] == "mmsim-clips-v1" and m["stats"] == "normalization.json"
    assert m["splits"]["train"]["subjects"] == ["S01", "S02"] and m["splits"]["test"]["subjects"] == ["S03"]
    assert m["modalities"] == list(schema.MODALITY_NAMES)
    assert len(m["recordings"]["used"]) == 3 and m["recordings"]["skipped"] == []
    T = 12
    for split in ("train", "test"):
        entry = m["splits"][split]
        assert entry["num_clips"] == sum(s["num_clips"] for s in entry["shards"]) > 0
        for sh in entry["shards"]:
            assert sh["num_clips"] <= CFG["shard_size"]
            with h5py.File(out / sh["file"], "r") as f:
                n = sh["num_clips"]
                assert f["frames"].shape == (n, T, 32, 32, 3) and f["frames"].dtype == np.uint8
                for name in schema.MODALITY_NAMES:
                    a = f[f"actions/{name}"]
                    assert a.shape == (n, T) + schema.MODALITIES[name].shape and a.dtype == np.float32
                    assert f[f"present/{name}"].shape == (n,)
                meta = [json.loads(x) for x in f["meta"].asstr()[()]]
                for mt in meta:
                    for key in ("subject", "activity", "source", "start_time_s", "frame_step", "video_frame_indices"):
                        assert key in mt
                    assert len(mt["video_frame_indices"]) == T and mt["activity"] in (
                        "Peel a potato", "Pour water from a pitcher into a glass")
                    assert mt["source"].startswith(str(raw.resolve()))
                assert {mt["frame_step"] for mt in meta} <= {1, 2, 3}


def test_windows_inside_good_activities_only(processed):
    raw, out, m = processed
    ds = ClipDataset(out, "test")
    src = ds[0]["meta"]["source"]
    with ActionSenseRecording(src) as rec:
        ft = rec.frame_times()
        acts = {a.label: a for a in rec.activities()}
    for i in range(len(ds)):
        meta = ds[i]["meta"]
        a = acts[meta["activity"]]
        idx = np.array(meta["video_frame_indices"])
        assert (np.diff(idx) == meta["frame_step"]).all()
        assert a.start_s <= ft[idx[0]] and ft[idx[-1]] <= a.stop_s
        assert meta["start_time_s"] == pytest.approx(ft[idx[0]])


def test_missing_tactile_gloves(processed):
    raw, out, m = processed
    rec = {r["subject"]: r for r in m["recordings"]["used"]}["S02"]
    assert "hand_force" not in rec["modalities"] and "hand_force" in rec["missing_modalities"]
    ds = ClipDataset(out, "train")
    by_subject = {}
    for i in range(len(ds)):
        it = ds[i]
        by_subject.setdefault(it["meta"]["subject"], []).append(it)
    assert all(set(it["actions"]) == {"hand_pose", "body_pose", "emg"} for it in by_subject["S02"])
    assert all(set(it["actions"]) == set(schema.MODALITY_NAMES) for it in by_subject["S01"])
    # No force -> no grip words in the sentence.
    assert all("holding" not in it["text"]["sentence"] for it in by_subject["S02"])
    assert m["splits"]["train"]["modality_clips"]["hand_force"] == len(by_subject["S01"])


def test_stats_fitted_on_train_only_and_reusable(processed):
    raw, out, m = processed
    stats = schema.NormalizationStats.load(out / "normalization.json")
    # Refit by hand from the train recordings' aligned raw values over the frames clips use.
    ds = ClipDataset(out, "train")
    frames_by_src: dict[str, set] = {}
    for i in range(len(ds)):
        meta = ds[i]["meta"]
        frames_by_src.setdefault(meta["source"], set()).update(meta["video_frame_indices"])
    raw_vals: dict[str, list] = {}
    for src, idx in frames_by_src.items():
        with ActionSenseRecording(src) as rec:
            idx = np.array(sorted(idx))
            vals, _ = align_modalities(rec, rec.frame_times()[idx])
        for k, v in vals.items():
            raw_vals.setdefault(k, []).append(v)
    ref = schema.NormalizationStats.fit({k: np.concatenate(v) for k, v in raw_vals.items()})
    for name in ("hand_pose", "body_pose", "emg"):
        np.testing.assert_allclose(stats.minimum[name], ref.minimum[name], rtol=1e-6)
        np.testing.assert_allclose(stats.maximum[name], ref.maximum[name], rtol=1e-6)
    # Train values span [0, 1]; test values use the same (train) statistics, so they may leave [0, 1].
    tr = np.stack([ds[i]["actions"]["emg"] for i in range(len(ds))])
    assert tr.min() == pytest.approx(0.0, abs=1e-6) and tr.max() == pytest.approx(1.0, abs=1e-6)
    # Reuse: denormalising a stored test clip gives back the raw aligned values.
    te = ClipDataset(out, "test")
    item = te[0]
    with ActionSenseRecording(item["meta"]["source"]) as rec:
        vals, _ = align_modalities(rec, rec.frame_times()[item["meta"]["video_frame_indices"]])
    for name in schema.MODALITY_NAMES:
        back = schema.denormalize(name, item["actions"][name], te.stats)
        expect = vals[name] if name != "hand_force" else np.clip(vals[name], *schema.TACTILE_CLIP)
        np.testing.assert_allclose(back, expect, rtol=1e-4, atol=1e-3)


def test_frames_match_video(processed):
    from mmsim_core.video import read_video

    raw, out, m = processed
    item = ClipDataset(out, "test")[2]
    video = read_video(item["meta"]["video"], size=32)
    idx = item["meta"]["video_frame_indices"]
    np.testing.assert_array_equal(np.concatenate([item["context"], item["future"]]), video[idx])


def test_text_descriptions(processed):
    assert verb_phrase("Peel a potato") == ("peel", "peel potato")
    assert verb_phrase("Open/close a jar of almond butter") == ("open", "open jar")
    assert verb_phrase("Stir the soup with a spoon") == ("stir", "stir soup")  # generic fallback
    assert verb_phrase("Load dishwasher") == ("load", "load dishwasher")  # prefix of a known label
    force = np.zeros((12, 2))
    force[:, 0] = 0.9
    force[:, 1] = 0.1
    d = describe("Peel a potato", 3, force, activity_force=(0.4, 0.1, 0.6))
    assert d == {"verb": "peel", "phrase": "peel potato",
                 "sentence": "person peel potato in a fast manner, while holding it tightly with left hand"}
    d = describe("Peel a potato", 1, force[:, ::-1] * 0.1, activity_force=(0.4, 0.15, 0.6))
    assert d["sentence"] == "person peel potato in a slow manner, while holding it gently with right hand"
    d = describe("Peel a potato", 2, np.full((12, 2), 0.2), activity_force=(0.4, 0.1, 0.6))
    assert d["sentence"] == "person peel potato, while holding it with both hands"
    assert describe("Peel a potato", 2, None)["sentence"] == "person peel potato"
    # In the processed data: speed words follow the frame step, grip side follows the glove.
    raw, out, m = processed
    ds = ClipDataset(out, "train")
    for i in range(len(ds)):
        it = ds[i]
        s, step = it["text"]["sentence"], it["meta"]["frame_step"]
        assert ("slow" in s) == (step == 1) and ("fast" in s) == (step == 3)
        if it["meta"]["subject"] == "S01":
            assert s.endswith("with left hand")
    sentences = {ds[i]["text"]["sentence"] for i in range(len(ds))}
    assert any("tightly" in s for s in sentences) and any("gently" in s for s in sentences)


def test_explicit_test_subjects_and_maybe(tmp_path):
    raw = tmp_path / "raw"
    write_dataset(raw, subjects=("S01", "S02"), seconds=6.0)
    m = preprocess(raw, tmp_path / "o1", PreprocessConfig(test_subjects=("S01",), include_maybe=True, **CFG))
    assert m["splits"]["test"]["subjects"] == ["S01"] and m["splits"]["train"]["subjects"] == ["S02"]
    acts = {json.loads(x)["activity"] for sh in m["splits"]["train"]["shards"]
            for x in h5py.File(tmp_path / "o1" / sh["file"], "r")["meta"].asstr()[()]}
    assert "Clean a pan with a sponge" in acts and "Slice a cucumber" not in acts
    with pytest.raises(DatasetError, match=r"test_subjects \['S07'\] not among"):
        preprocess(raw, tmp_path / "o2", PreprocessConfig(test_subjects=("S07",), **CFG))
    m = preprocess(raw, tmp_path / "o3", PreprocessConfig(test_subjects=(), **CFG))
    assert m["splits"]["test"]["num_clips"] == 0 and m["splits"]["train"]["subjects"] == ["S01", "S02"]


def test_bad_recording_skipped_with_reason(tmp_path):
    raw = tmp_path / "raw"
    paths = write_dataset(raw, subjects=("S01", "S02", "S03"), seconds=6.0)
    with h5py.File(paths[1], "r+") as f:
        del f["experiment-activities"]
    m = preprocess(raw, tmp_path / "out", PreprocessConfig(**CFG))
    skipped = m["recordings"]["skipped"]
    assert len(skipped) == 1 and skipped[0]["path"] == str(paths[1])
    assert "experiment-activities" in skipped[0]["reason"]
    assert m["splits"]["train"]["subjects"] == ["S01"]
    # Only bad recordings left: an error listing the reasons.
    shutil.rmtree(paths[0].parent)
    shutil.rmtree(paths[2].parent)
    with pytest.raises(DatasetError, match="no usable recordings.*experiment-activities"):
        preprocess(raw, tmp_path / "out2", PreprocessConfig(**CFG))


def test_single_subject_needs_explicit_split(tmp_path):
    write_recording(tmp_path / "raw", subject="S04")
    with pytest.raises(DatasetError, match="only one subject"):
        preprocess(tmp_path / "raw", tmp_path / "out", PreprocessConfig(**CFG))


def test_process_pool_gives_same_clips(processed, tmp_path):
    raw, out, m = processed
    m2 = preprocess(raw, tmp_path / "out", PreprocessConfig(**{**CFG, "workers": 2}))
    assert m2["splits"]["train"]["num_clips"] == m["splits"]["train"]["num_clips"]
    a, b = ClipDataset(out, "test"), ClipDataset(tmp_path / "out", "test")
    for i in (0, len(a) - 1):
        np.testing.assert_array_equal(a[i]["future"], b[i]["future"])
        for k in a[i]["actions"]:
            np.testing.assert_array_equal(a[i]["actions"][k], b[i]["actions"][k])
        assert a[i]["text"] == b[i]["text"]


def test_cli_preprocess(processed, tmp_path, capsys):
    from mmsim_cli import main

    raw, out, m = processed
    rc = main(["preprocess", str(raw), str(tmp_path / "cli"), "--size", "32", "--frame-steps", "1,3",
               "--test-subjects", "S01", "--workers", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    m2 = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert m2["config"]["frame_steps"] == [1, 3] and m2["splits"]["test"]["subjects"] == ["S01"]
    assert f"test: {m2['splits']['test']['num_clips']} clips" in printed


def test_preprocess_with_given_stats_keeps_every_modality_without_a_train_split(processed, tmp_path):
    """New recordings for a trained model: all in the test split, normalised with the model's statistics."""
    raw, out, m = processed
    subjects = tuple(s for split in m["splits"].values() for s in split["subjects"])
    no_stats = preprocess(raw, tmp_path / "a", PreprocessConfig(size=32, test_subjects=subjects, workers=1))
    assert no_stats["splits"]["train"]["num_clips"] == 0
    assert set(no_stats["modalities"]) < set(m["modalities"])  # min-max modalities had nothing to fit on
    given = preprocess(raw, tmp_path / "b", PreprocessConfig(size=32, test_subjects=subjects, workers=1,
                                                             stats=str(out / "normalization.json")))
    assert given["modalities"] == m["modalities"]
    assert json.loads((tmp_path / "b" / "normalization.json").read_text()) == json.loads(
        (out / "normalization.json").read_text())
    with pytest.raises(ValueError, match="stats must be an existing normalization.json"):
        PreprocessConfig(stats=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a usable normalization.json"):
        PreprocessConfig(stats=str(tmp_path / "bad.json"))


def test_sensor_dropout_masks_modality_per_clip(tmp_path):
    """A glove that stops streaming mid-recording: clips after that lack hand_force, the rest keep it."""
    from fixtures.recordings import T0

    p = write_recording(tmp_path / "raw", subject="S01")
    with h5py.File(p, "r+") as f:
        g = f["tactile-glove-right/tactile_data"]
        keep = g["time_s"][:, 0] < T0 + 3.0
        for key in ("data", "time_s", "time_str"):
            d = g[key][()][keep]
            del g[key]
            g.create_dataset(key, data=d)
    m = preprocess(tmp_path / "raw", tmp_path / "out", PreprocessConfig(test_subjects=(), **CFG))
    ds = ClipDataset(tmp_path / "out", "train")
    for i in range(len(ds)):
        it = ds[i]
        has_force = "hand_force" in it["actions"]
        assert has_force == (it["meta"]["activity"] == "Peel a potato"), it["meta"]
        assert {"hand_pose", "body_pose", "emg"} <= set(it["actions"])
    assert 0 < m["splits"]["train"]["modality_clips"]["hand_force"] < m["splits"]["train"]["num_clips"]


def test_a_new_modality_is_one_registry_entry(tmp_path, monkeypatch):
    """Registering gaze (ActionSense's eye tracker) in a copy of the registry is enough for the reader, preprocess,
    the normalisation statistics and ClipDataset to carry it: no other module names its stream."""
    gaze = schema.ModalitySpec(
        name="gaze", display_name="gaze", shape=(2,), unit="fraction of the world-video frame",
        description="Where the eyes look in the world video (x, y).",
        sources=(schema.StreamSource("eye-tracking-gaze/position", ((2,),)),),
        normalization="minmax", stats_axes=(-1,))
    monkeypatch.setattr(schema, "MODALITIES", {**schema.MODALITIES, "gaze": gaze})
    raw = tmp_path / "raw"
    paths = [write_recording(raw / s, subject=s, seed=i, seconds=4.0, gaze=True) for i, s in enumerate(("S01", "S02"))]

    with ActionSenseRecording(paths[0]) as rec:
        assert rec.available_modalities() == (*schema.MODALITY_NAMES, "gaze")
        ft = rec.frame_times()[:6]
        values, valid = align_modalities(rec, ft)
        stream = rec.stream("eye-tracking-gaze", "position")
        nearest = np.abs(stream.time_s[None, :] - ft[:, None]).argmin(axis=1)
        np.testing.assert_array_equal(values["gaze"], stream.data[nearest].astype(np.float32))
        assert values["gaze"].shape == (6, 2) and valid["gaze"].all()

    m = preprocess(raw, tmp_path / "out", PreprocessConfig(size=16, workers=1, test_subjects=("S02",)))
    assert m["modalities"][-1] == "gaze" and m["splits"]["train"]["modality_clips"]["gaze"] > 0
    ds = ClipDataset(tmp_path / "out", split="train")
    assert ds.stats.minimum["gaze"].shape == (2,)
    item = ds[0]
    assert item["actions"]["gaze"].shape == (12, 2)
    assert item["actions"]["gaze"].min() >= 0 and item["actions"]["gaze"].max() <= 1
    raw_gaze = schema.denormalize("gaze", item["actions"]["gaze"], ds.stats)
    assert 0.15 < raw_gaze[:, 0].min() and raw_gaze[:, 0].max() < 0.85  # back in frame fractions


def test_without_the_entry_gaze_is_ignored(tmp_path):
    p = write_recording(tmp_path / "r", subject="S01", seconds=4.0, gaze=True)
    with ActionSenseRecording(p) as rec:
        assert rec.available_modalities() == schema.MODALITY_NAMES
