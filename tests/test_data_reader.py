"""ActionSense reader on recordings in the real layout written by tests/fixtures (not by mmsim's synth)."""

import logging
import os

import h5py
import numpy as np
import pytest
from fixtures.recordings import T0, write_recording

from mmsim_core import schema
from mmsim_core.data import PreprocessConfig, preprocess
from mmsim_core.data.actionsense import ActionSenseRecording, align_modalities, nearest_indices, window_mean_abs
from mmsim_core.errors import RecordingError
from mmsim_core.video import write_video


@pytest.fixture
def rec_path(tmp_path):
    return write_recording(tmp_path / "rec", subject="S05", seconds=6.0)


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _replace(f, key, data):
    del f[key]
    f.create_dataset(key, data=data)


# ------------------------------------------------------------------------------------------ good file
def test_reader_basics(rec_path):
    with ActionSenseRecording(rec_path) as rec:
        assert rec.subject == "S05"
        assert "myo-left" in rec.devices and "emg" in rec.streams("myo-left")
        assert set(rec.streams()) == set(rec.devices)
        assert rec.headings("experiment-activities", "activities") == ["Activity", "Start/Stop", "Valid", "Notes"]
        assert rec.headings("myo-left", "emg")[0] == "EMG Channel 0"
        emg = rec.stream("myo-left", "emg")
        assert emg.data.shape[1:] == (8,) and emg.data.dtype == np.int32
        assert emg.time_s.ndim == 1 and emg.time_s.dtype == np.float64 and len(emg.time_s) == len(emg.data)
        assert rec.available_modalities() == schema.MODALITY_NAMES
        assert rec.video_path.name.endswith("_S05_eye-tracking-video-world_frame.mp4")
        assert rec.check_video()["frames"] == len(rec.frame_times()) == 180


def test_activities_keep_good_drop_bad_and_maybe(rec_path):
    with ActionSenseRecording(rec_path) as rec:
        good = rec.activities()
        assert [a.label for a in good] == ["Peel a potato", "Pour water from a pitcher into a glass"]
        assert all(isinstance(a.label, str) and a.rating == "Good" for a in good)
        assert good[0].start_s == pytest.approx(T0 + 0.3) and good[0].stop_s == pytest.approx(T0 + 2.6)
        with_maybe = rec.activities(include_maybe=True)
        assert [a.label for a in with_maybe] == ["Peel a potato", "Clean a pan with a sponge",
                                                 "Pour water from a pitcher into a glass"]
        assert "Slice a cucumber" not in [a.label for a in with_maybe]  # Bad never kept


def test_activity_pairing_uses_next_stop_of_same_label(tmp_path):
    acts = [("Slice bread", 0.5, 2.0, "Good"), ("Peel a potato", 1.0, 1.5, "Good"), ("Slice bread", 3.0, 4.0, "Good")]
    p = write_recording(tmp_path, seconds=5.0, activities=acts)
    with ActionSenseRecording(p) as rec:
        got = [(a.label, round(a.start_s - T0, 2), round(a.stop_s - T0, 2)) for a in rec.activities()]
    assert got == [("Slice bread", 0.5, 2.0), ("Peel a potato", 1.0, 1.5), ("Slice bread", 3.0, 4.0)]


def test_subject_from_attributes_when_filename_has_none(tmp_path):
    p = write_recording(tmp_path, subject="S02")
    q = p.with_name("recording.hdf5")
    p.rename(q)
    _edit(q, lambda f: f.attrs.__setitem__("subject", "4"))
    with ActionSenseRecording(q) as rec:
        assert rec.subject == "S04"


def test_video_choice_prefers_subject_tag(tmp_path):
    p = write_recording(tmp_path, subject="S01", seconds=2.0, activities=[("Peel a potato", 0.1, 1.9, "Good")])
    write_video(tmp_path / "2022-01-01_S09_eye-tracking-video-world_frame.mp4", np.zeros((3, 32, 48, 3), np.uint8))
    with ActionSenseRecording(p) as rec:
        assert "_S01_" in rec.video_path.name


def test_modalities_follow_devices(tmp_path):
    p = write_recording(tmp_path / "a", tactile=False, fingers=False)
    with ActionSenseRecording(p) as rec:
        assert rec.available_modalities() == ("body_pose", "emg")
        status = rec.modality_status()
        assert "tactile-glove-left/tactile_data missing" in status["hand_force"]
        assert "(23, 3)" in status["hand_pose"] and "no finger tracking" in status["hand_pose"]
    p = write_recording(tmp_path / "b", myo=False, xsens=False)
    with ActionSenseRecording(p) as rec:
        assert rec.available_modalities() == ("hand_force",)


def test_alignment_values(rec_path):
    with ActionSenseRecording(rec_path) as rec:
        ft = rec.frame_times()[:20]
        values, valid = align_modalities(rec, ft)
        for m in schema.MODALITY_NAMES:
            assert values[m].shape == (20,) + schema.MODALITIES[m].shape and values[m].dtype == np.float32
            assert valid[m].all()
        # Hand pose is carpus-relative: the Carpus entry of each chain is exactly 0.
        assert np.all(values["hand_pose"][:, :, 0] == 0)
        seg = rec.stream("xsens-segments", "position_cm")
        com = rec.stream("xsens-CoM", "position_cm")
        i, _ = nearest_indices(seg.time_s, ft[:1])
        j, _ = nearest_indices(com.time_s, ft[:1])
        expect = seg.data[i[0], list(schema.BODY_POSE_INDICES)] - com.data[j[0]]
        np.testing.assert_allclose(values["body_pose"][0], expect, rtol=1e-6)
        # EMG envelope = mean |emg| over samples within +-50 ms.
        emg = rec.stream("myo-right", "emg")
        sel = np.abs(emg.time_s - ft[10]) <= 0.05
        np.testing.assert_allclose(values["emg"][10, 1], np.abs(emg.data[sel]).mean(axis=0), rtol=1e-5)


def test_nearest_and_gaps():
    t = np.array([0.0, 1.0, 2.0, 10.0])
    idx, ok = nearest_indices(t, np.array([-0.1, 0.4, 0.6, 5.0, 9.9, 12.0]))
    assert idx.tolist() == [0, 0, 1, 2, 3, 3]
    assert ok.tolist() == [True, False, False, False, True, False]


def test_emg_window_falls_back_to_nearest():
    from mmsim_core.data.actionsense import Stream

    s = Stream("myo-left", "emg", np.array([[-4], [8], [2]], dtype=np.int32), np.array([0.0, 0.01, 0.2]))
    env, ok = window_mean_abs(s, np.array([0.0, 0.15, 0.5]))
    assert env[:, 0].tolist() == [6.0, 2.0, 2.0] and ok.tolist() == [True, True, False]


# ------------------------------------------------------------------------------------------ bad files
def test_truncated_hdf5_names_file(rec_path):
    os.truncate(rec_path, os.path.getsize(rec_path) // 2)
    with pytest.raises(RecordingError, match="truncated") as e:
        ActionSenseRecording(rec_path)
    assert str(rec_path) in str(e.value)


def _flip_header_byte(path, obj: str, at: int) -> None:
    """Invert one byte ``at`` bytes into the object header of ``obj``, as bit rot or a bad copy would."""
    with h5py.File(path, "r") as f:
        addr = h5py.h5o.get_info(f[obj].id).addr
    with open(path, "r+b") as fh:
        fh.seek(addr + at)
        byte = fh.read(1)[0]
        fh.seek(addr + at)
        fh.write(bytes([byte ^ 0xFF]))


def test_flipped_byte_in_object_header_is_a_recording_error(tmp_path):
    """Byte 8 of a version-1 object header is the header's size: flipped, h5py cannot open the object and
    raised a bare KeyError ('message not aligned') that escaped the reader; preprocess must skip the file."""
    raw = tmp_path / "raw"
    write_recording(raw / "good", subject="S01", seconds=3.0, seed=0)
    bad = write_recording(raw / "bad", subject="S02", seconds=3.0, seed=1)
    _flip_header_byte(bad, "myo-left/emg", 8)
    with ActionSenseRecording(bad) as rec:
        assert "emg" in rec.streams("myo-left")  # the link survives; the object behind it is damaged
        for read in (lambda: rec.stream("myo-left", "emg"), rec.modality_status, rec.streams,
                     lambda: rec.has_stream("myo-left", "emg")):
            with pytest.raises(RecordingError, match="damaged HDF5") as e:
                read()
            assert str(bad) in str(e.value) and e.value.stream == "myo-left/emg", str(e.value)
        assert len(rec.activities()) == 2  # the undamaged streams still read

    m = preprocess(raw, tmp_path / "out", PreprocessConfig(size=32, workers=1, test_subjects=("none",)))
    (skipped,) = m["recordings"]["skipped"]
    assert skipped["path"] == str(bad) and "[myo-left/emg]" in skipped["reason"], skipped
    assert not skipped["reason"].startswith("KeyError"), skipped
    assert [r["subject"] for r in m["recordings"]["used"]] == ["S01"]


def test_not_hdf5_names_file(tmp_path):
    p = tmp_path / "x_S01.hdf5"
    p.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(RecordingError, match="x_S01.hdf5"):
        ActionSenseRecording(p)


def test_missing_device_names_file_and_stream(rec_path):
    _edit(rec_path, lambda f: f.__delitem__("eye-tracking-video-world"))
    with ActionSenseRecording(rec_path) as rec:
        with pytest.raises(RecordingError, match="eye-tracking-video-world") as e:
            rec.frame_times()
        assert str(rec_path) in str(e.value) and e.value.stream == "eye-tracking-video-world/frame_timestamp"
        with pytest.raises(RecordingError, match=r"stream 'nope' is missing"):
            rec.stream("myo-left", "nope")


def test_mostly_nan_stream_is_error(rec_path):
    def poison(f):
        d = f["tactile-glove-left/tactile_data/data"][()]
        d[::3] = np.nan
        d[1, 0, 0] = np.inf
        _replace(f, "tactile-glove-left/tactile_data/data", d)

    _edit(rec_path, poison)
    with ActionSenseRecording(rec_path) as rec:
        with pytest.raises(RecordingError, match="NaN/inf") as e:
            rec.stream("tactile-glove-left", "tactile_data")
    assert str(rec_path) in str(e.value) and "tactile-glove-left/tactile_data" in str(e.value)


def test_few_nan_samples_dropped_with_warning(rec_path, caplog):
    def poison(f):
        d = f["xsens-CoM/position_cm/data"][()]
        d[5] = np.nan
        _replace(f, "xsens-CoM/position_cm/data", d)

    _edit(rec_path, poison)
    with ActionSenseRecording(rec_path) as rec, caplog.at_level(logging.WARNING):
        s = rec.stream("xsens-CoM", "position_cm")
        assert np.isfinite(s.data).all() and len(s.data) == len(rec.time_s("xsens-CoM", "position_cm")) - 1
    assert "dropped 1 NaN/inf" in caplog.text


def test_timestamps_backwards_is_error(rec_path):
    def rewind(f):
        t = f["myo-right/emg/time_s"][()]
        t[100:400] -= 3.0  # a clock jump back
        _replace(f, "myo-right/emg/time_s", t)

    _edit(rec_path, rewind)
    with ActionSenseRecording(rec_path) as rec:
        with pytest.raises(RecordingError, match="backwards") as e:
            rec.stream("myo-right", "emg")
    assert str(rec_path) in str(e.value) and "myo-right/emg" in str(e.value)


def test_few_out_of_order_timestamps_sorted(rec_path, caplog):
    def swap(f):
        t = f["tactile-glove-right/tactile_data/time_s"][()]
        t[[10, 11]] = t[[11, 10]]
        _replace(f, "tactile-glove-right/tactile_data/time_s", t)

    _edit(rec_path, swap)
    with ActionSenseRecording(rec_path) as rec, caplog.at_level(logging.WARNING):
        s = rec.stream("tactile-glove-right", "tactile_data")
        assert np.all(np.diff(s.time_s) >= 0)
    assert "out of order" in caplog.text


def test_frame_timestamps_backwards_is_error(rec_path):
    def swap(f):
        t = f["eye-tracking-video-world/frame_timestamp/time_s"][()]
        t[[10, 11]] = t[[11, 10]]
        _replace(f, "eye-tracking-video-world/frame_timestamp/time_s", t)

    _edit(rec_path, swap)
    with ActionSenseRecording(rec_path) as rec, pytest.raises(RecordingError, match="backwards at sample 11"):
        rec.frame_times()


def test_unreadable_video_names_video(rec_path):
    with ActionSenseRecording(rec_path) as rec:
        video = rec.video_path
    video.write_bytes(b"\x00garbage" * 100)
    with ActionSenseRecording(rec_path) as rec, pytest.raises(RecordingError) as e:
        rec.check_video()
    assert video.name in str(e.value)


def test_video_shorter_than_timestamps_names_video(rec_path):
    with ActionSenseRecording(rec_path) as rec:
        video = rec.video_path
    write_video(video, np.zeros((50, 54, 96, 3), np.uint8))
    with ActionSenseRecording(rec_path) as rec, pytest.raises(RecordingError, match="50 frames but .* 180 frame") as e:
        rec.check_video()
    assert video.name in str(e.value)


def test_no_video_beside_hdf5(rec_path):
    with ActionSenseRecording(rec_path) as rec:
        rec.video_path.unlink()
    with ActionSenseRecording(rec_path) as rec, pytest.raises(RecordingError, match="no world video"):
        rec.video_path


def test_empty_activity_table_is_error(rec_path):
    def empty(f):
        _replace(f, "experiment-activities/activities/data", np.zeros((0, 4), dtype="S500"))
        _replace(f, "experiment-activities/activities/time_s", np.zeros((0, 1)))

    _edit(rec_path, empty)
    with ActionSenseRecording(rec_path) as rec, pytest.raises(RecordingError, match="empty") as e:
        rec.activities()
    assert "experiment-activities/activities" in str(e.value)


def test_wrong_stream_shape_is_error(rec_path):
    _edit(rec_path, lambda f: _replace(f, "tactile-glove-left/tactile_data/data",
                                       np.zeros((len(f["tactile-glove-left/tactile_data/time_s"]), 16, 16))))
    with ActionSenseRecording(rec_path) as rec, pytest.raises(RecordingError, match=r"\(16, 16\)"):
        rec.available_modalities()


def test_nan_frame_timestamp_is_error_not_dropped(rec_path):
    def poison(f):
        t = f["eye-tracking-video-world/frame_timestamp/time_s"][()]
        t[7] = np.nan
        _replace(f, "eye-tracking-video-world/frame_timestamp/time_s", t)

    _edit(rec_path, poison)
    with ActionSenseRecording(rec_path) as rec, pytest.raises(RecordingError, match="non-finite timestamps") as e:
        rec.frame_times()
    assert "eye-tracking-video-world/frame_timestamp" in str(e.value)
