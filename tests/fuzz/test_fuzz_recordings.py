"""Property-based fuzzing of the ActionSense reader and ``preprocess`` over recordings in the real layout.

A valid recording (tests/fixtures/recordings.py) is copied and damaged in one or two ways drawn by hypothesis;
``preprocess`` then either writes clips that satisfy the dataset's invariants, or skips the recording with a
reason naming the file in ``manifest.json``, or raises an ``MMSimError`` naming the file - never another
exception. Fixed seeds (``derandomize=True``): a failure reproduces.
"""

import json
import re
import shutil
import struct

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.recordings import write_recording
from mmsim_core.data import ClipDataset
from mmsim_core.data.preprocess import PreprocessConfig, preprocess
from mmsim_core.errors import MMSimError

STREAMS = ("myo-left/emg", "myo-right/emg", "tactile-glove-left/tactile_data", "tactile-glove-right/tactile_data",
           "xsens-segments/position_cm", "xsens-CoM/position_cm", "experiment-activities/activities",
           "eye-tracking-video-world/frame_timestamp")
KINDS = ("truncate_hdf5", "truncate_video", "garbage_video", "empty_video", "drop_stream", "empty_stream",
         "nan", "inf", "dtype", "shape", "time_dup", "time_back", "time_text", "time_short", "act_unmatched",
         "act_labels", "act_shape", "drop_dataset", "flip_header")
FAST = settings(max_examples=6, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
FULL = settings(FAST, max_examples=200)

corruption = st.tuples(st.sampled_from(KINDS), st.sampled_from(STREAMS), st.floats(0.0, 1.0),
                       st.integers(0, 2**31 - 1))


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz_template")
    write_recording(base / "good", subject="S01", seconds=3.0, seed=0)
    write_recording(base / "victim", subject="S02", seconds=3.0, seed=1)
    return base


def _replace(g, name, data):
    del g[name]
    g.create_dataset(name, data=data)


def flip_header_byte(h5, stream: str, amount: float, seed: int) -> None:
    """Change one byte of an object header (the stream's group, its ``data`` or its ``time_s``; ``amount`` picks
    the byte), as bit rot or a bad copy does: h5py then raises KeyError, RuntimeError or OSError on opening,
    listing or reading the object, or reads a wrong datatype."""
    rng = np.random.default_rng(seed)
    with h5py.File(h5, "r") as f:
        if stream not in f:
            return
        g = f[stream]
        objs = [g, *(g[k] for k in ("data", "time_s") if k in g)]
        obj = objs[seed % len(objs)]
        addr = h5py.h5o.get_info(obj.id).addr
    raw = bytearray(h5.read_bytes())
    # A version-1 header (what h5py writes by default): 16-byte prefix, then the first chunk of messages, whose
    # size is the 4 bytes at offset 8. Bytes past it belong to other objects.
    size = 16 + struct.unpack_from("<I", raw, addr + 8)[0] if raw[addr] == 1 else 16
    raw[addr + min(int(amount * size), size - 1)] ^= int(rng.integers(1, 256))
    h5.write_bytes(bytes(raw))


def corrupt(h5, video, kind: str, stream: str, amount: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if kind == "flip_header":
        flip_header_byte(h5, stream, amount, seed)
        return
    if kind == "truncate_hdf5":
        raw = h5.read_bytes()
        h5.write_bytes(raw[: int(len(raw) * amount)])
        return
    if kind == "truncate_video":
        raw = video.read_bytes()
        video.write_bytes(raw[: int(len(raw) * amount)])
        return
    if kind == "garbage_video":
        video.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return
    if kind == "empty_video":
        video.write_bytes(b"")
        return
    with h5py.File(h5, "r+") as f:
        device, name = stream.split("/")
        g = f[device][name]
        data, t = g["data"][()], g["time_s"][()]
        n = len(t)
        if n == 0:  # an earlier corruption emptied it
            return
        rows = rng.choice(n, size=max(1, int(n * amount * 0.2)), replace=False)
        if kind == "drop_stream":
            del f[device][name]
        elif kind == "drop_dataset":
            del g["data" if amount < 0.5 else "time_s"]
        elif kind == "empty_stream":
            _replace(g, "data", data[:0])
            _replace(g, "time_s", t[:0])
        elif kind in ("nan", "inf"):
            if data.dtype.kind == "f":
                data[rows] = np.nan if kind == "nan" else np.inf
                _replace(g, "data", data)
            else:
                t[rows] = np.nan if kind == "nan" else -np.inf
                _replace(g, "time_s", t)
        elif kind == "dtype":
            if data.dtype.kind in "SUO":  # text (activity labels): numbers where words belong
                _replace(g, "data", np.zeros(data.shape, np.float16))
            else:
                _replace(g, "data", data.astype("S8") if amount < 0.5 else data.astype(np.float16))
        elif kind == "shape":
            _replace(g, "data", data.reshape(n, -1)[:, : max(1, int(data[0].size * amount))])
        elif kind == "time_dup":
            t[rows] = t[rows - 1] if n > 1 else t[rows]
            _replace(g, "time_s", t)
        elif kind == "time_back":
            t[rows] -= 10.0 * amount
            _replace(g, "time_s", t)
        elif kind == "time_text":
            _replace(g, "time_s", np.array([[b"noon"]] * n))
        elif kind == "time_short":
            _replace(g, "time_s", t[: int(n * amount)])
        elif kind.startswith("act_"):
            a = f["experiment-activities/activities"]
            rows_ = a["data"][()]
            # An earlier corruption may already have turned the labels into numbers, a flat array or a
            # different length than their timestamps: the file is damaged there already, nothing to add.
            if rows_.ndim != 2 or rows_.shape[1] < 3 or rows_.dtype.kind not in "SO" \
                    or len(a["time_s"]) != len(rows_):
                return
            corrupt_activities(a, kind, rows_, amount, rng)


def corrupt_activities(a, kind, rows_, amount, rng):
    """The ``act_*`` corruptions of ``corrupt``, on the activity labels ``rows_`` (N, >=3) text of group ``a``."""
    if kind == "act_unmatched":
        keep = rng.random(len(rows_)) > amount * 0.6
        _replace(a, "data", rows_[keep])
        _replace(a, "time_s", a["time_s"][()][keep])
    elif kind == "act_labels":
        rows_[:, 0] = [b"\xff\xfe" + bytes(rng.integers(0, 256, 5, dtype=np.uint8)) for _ in rows_]
        if amount > 0.5:
            rows_[:, 2] = b"Perhaps"
        _replace(a, "data", rows_)
    elif kind == "act_shape":
        _replace(a, "data", rows_[:, :2] if amount < 0.5 else rows_.reshape(-1))


def check_outcome(raw, out, victim_h5, test_subjects=("S02",)):
    """Clips that satisfy the dataset's invariants, a skip naming the file, or an MMSimError naming it.

    With the victim (S02) as the test subject, skipping it ends in an error about the split, so the skip's
    reason is only seen (and checked) with ``test_subjects=("none",)``."""
    try:
        manifest = preprocess(raw, out, PreprocessConfig(frame_steps=(1,), stride=6, workers=1,
                                                         test_subjects=test_subjects))
    except MMSimError as e:
        assert victim_h5.name in str(e) or "S02" in str(e) or "eye-tracking-video-world" in str(e), str(e)
        return "error"
    for s in manifest["recordings"]["skipped"]:
        assert s["reason"] and ("S02" in s["path"]), s
        # A reason from the reader names file and stream; "KeyError: ..." is an h5py error that escaped it.
        assert not re.match(r"\w+(Error|Exception): ", s["reason"]), s
    for split in ("train", "test"):
        ds = ClipDataset(out, split)
        for i in range(len(ds)):
            item = ds[i]
            assert item["context"].dtype == np.uint8 and item["future"].dtype == np.uint8
            for m, a in item["actions"].items():
                a = np.asarray(a)
                assert np.isfinite(a).all(), (m, i)
                if split == "train":  # min-max fitted on train; held-out subjects may exceed the range
                    assert a.min() >= -1.0001 and a.max() <= 1.0001, (m, float(a.min()), float(a.max()))
            idx = item["meta"]["video_frame_indices"]
            assert list(idx) == sorted(idx) and len(set(idx)) == len(idx)
            assert item["meta"]["end_time_s"] >= item["meta"]["start_time_s"]
        ds.close()
    return "skipped" if manifest["recordings"]["skipped"] else "ok"


def _run(template, tmp_path_factory, corruptions, test_subjects=("S02",)):
    work = tmp_path_factory.mktemp("fuzz")
    raw = work / "raw"
    shutil.copytree(template, raw)
    h5 = next((raw / "victim").glob("*.hdf5"))
    video = next((raw / "victim").glob("*.mp4"))
    for c in corruptions:
        try:
            corrupt(h5, video, *c)
        except (OSError, KeyError, RuntimeError):  # an earlier corruption made the file unwritable or unopenable:
            pass  # that is the case to test
    outcome = check_outcome(raw, work / "out", h5, test_subjects)
    shutil.rmtree(work, ignore_errors=True)
    return outcome


@FAST
@given(corruptions=st.lists(corruption, min_size=1, max_size=2))
def test_damaged_recordings_give_clips_a_skip_or_a_named_error(template, tmp_path_factory, corruptions):
    _run(template, tmp_path_factory, corruptions)


@pytest.mark.slow
@FULL
@given(corruptions=st.lists(corruption, min_size=1, max_size=3))
def test_damaged_recordings_full(template, tmp_path_factory, corruptions):
    _run(template, tmp_path_factory, corruptions)


header_flip = st.tuples(st.just("flip_header"), st.sampled_from(STREAMS), st.floats(0.0, 1.0),
                        st.integers(0, 2**31 - 1))


@settings(FAST, max_examples=8)
@given(flip=header_flip)
def test_flipped_byte_in_an_object_header_gives_a_skip_or_a_named_error(template, tmp_path_factory, flip):
    _run(template, tmp_path_factory, [flip], test_subjects=("none",))


@pytest.mark.slow
@settings(FULL, max_examples=300)
@given(flips=st.lists(header_flip, min_size=1, max_size=2))
def test_flipped_header_bytes_full(template, tmp_path_factory, flips):
    _run(template, tmp_path_factory, flips, test_subjects=("none",))
