"""The synthetic world: real ActionSense layout, determinism, and the oracle (every modality causally
shapes the video; unchanged actions reproduce the recorded video)."""

from __future__ import annotations

import ast

import h5py
import numpy as np
import pytest

from mmsim_core import schema
from mmsim_core.errors import ActionInputError, RecordingError
from mmsim_core.synth import generate_dataset, generate_recording, load_oracle, world
from mmsim_core.video import video_info

SECONDS = 10.0
POUR = "Pour water from a pitcher into a glass"
CARRY = "Get/replace items from refrigerator/cabinets/drawers"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Two subjects x 10 s: S00 pours water (grasp + heavy lift), S01 (other scene) carries an item."""
    out = tmp_path_factory.mktemp("synth")
    a = generate_recording(out, 0, seconds=SECONDS, seed=3, activities=[POUR])
    b = generate_recording(out, 1, seconds=SECONDS, seed=3, activities=[CARRY])
    return out, a, b


def _rate(t: np.ndarray) -> float:
    return (len(t) - 1) / (t[-1] - t[0])


# ----------------------------------------------------------------------------------------------
# The ActionSense layout, read with plain h5py
# ----------------------------------------------------------------------------------------------
def test_layout_names_dtypes_and_rates(recordings):
    out, a, _ = recordings
    assert a.parent.name.endswith("_experiment_S00") and a.name.endswith("_streamLog_actionNet-wearables_S00.hdf5")
    videos = [p for p in a.parent.iterdir() if "_S00_eye-tracking-video-world_frame.mp4" in p.name]
    assert len(videos) == 1 and videos[0].name.split("_S00_")[0] == a.name.split("_streamLog")[0]
    with h5py.File(a, "r") as f:
        for device in f:
            for name in f[device]:
                g = f[device][name]
                n = g["data"].shape[0]
                assert g["time_s"].shape == (n, 1) and g["time_s"].dtype == np.float64, (device, name)
                assert g["time_str"].shape == (n, 1) and g["time_str"].dtype == np.dtype("S26"), (device, name)
                assert np.all(np.diff(g["time_s"][:, 0]) > 0), (device, name)
                assert g["time_s"][0, 0] > 1.6e9  # epoch seconds (2022)
        t = lambda d, s: f[d][s]["time_s"][:, 0]  # noqa: E731
        pressed = 0.0
        for side in schema.SIDES:
            emg = f[f"myo-{side}"]["emg"]
            assert emg["data"].dtype == np.int32 and emg["data"].shape[1:] == (8,)
            assert emg["time_s_original"].shape == emg["time_s"].shape
            assert 180 < _rate(t(f"myo-{side}", "emg")) < 220
            assert np.abs(emg["data"][()]).max() <= 128
            assert f[f"myo-{side}"]["acceleration_g"]["data"].shape[1:] == (3,)
            assert f[f"myo-{side}"]["orientation_quaternion"]["data"].shape[1:] == (4,)
            assert 45 < _rate(t(f"myo-{side}", "acceleration_g")) < 55
            tac = f[f"tactile-glove-{side}"]["tactile_data"]
            assert tac["data"].dtype == np.float32 and tac["data"].shape[1:] == (32, 32)
            assert 15 < _rate(t(f"tactile-glove-{side}", "tactile_data")) < 25
            steps = np.diff(t(f"tactile-glove-{side}", "tactile_data"))
            assert steps.std() / steps.mean() > 0.1  # irregular
            d = tac["data"][()]
            assert 510 < np.median(d) < 531  # untouched taxels read ~515-530
            pressed = max(pressed, float(d.max()))
            headings = ast.literal_eval(emg.attrs["Data headings"])
            assert isinstance(headings, list) and len(headings) == 8
        assert 590 < pressed < 620  # the gripping glove rises toward ~600
        seg = f["xsens-segments"]["position_cm"]["data"]
        assert seg.dtype == np.float32 and seg.shape[1:] == (schema.NUM_SEGMENTS_WITH_FINGERS, 3)
        assert f["xsens-segments"]["orientation_quaternion"]["data"].shape[1:] == (63, 4)
        assert 55 < _rate(t("xsens-segments", "position_cm")) < 65
        com = f["xsens-CoM"]["position_cm"]["data"][()]
        assert com.shape[1:] == (3,) and np.allclose(com, com[0])  # the subject stands at the counter
        assert f["xsens-joints"]["rotation_xzy_deg"]["data"].shape[1:] == (22, 3)
        gaze = f["eye-tracking-gaze"]["position"]["data"][()]
        assert gaze.shape[1:] == (2,) and gaze.min() >= 0 and gaze.max() <= 1
        ft = f["eye-tracking-video-world"]["frame_timestamp"]
        assert ft["data"].shape == (ft["time_s"].shape[0], 1) and ft["data"].dtype == np.float64
        assert 29 < _rate(ft["data"][:, 0]) < 31
        n_frames = ft["data"].shape[0]
        # hands are where the skeleton says: finger carpus == Xsens hand segment
        for off, name in ((schema.LEFT_HAND_OFFSET, "Left Hand"), (schema.RIGHT_HAND_OFFSET, "Right Hand")):
            j = schema.XSENS_BODY_SEGMENTS.index(name)
            assert np.abs(seg[:, off] - seg[:, j]).max() < 0.1
    info = video_info(videos[0])
    assert info["frames"] == n_frames
    assert abs(info["width"] / info["height"] - 16 / 9) < 0.02 and 29 < info["fps"] < 31


def test_activity_table_pairs(recordings):
    _, a, b = recordings
    for path in (a, b):
        with h5py.File(path, "r") as f:
            g = f["experiment-activities"]["activities"]
            rows, t = g["data"][()], g["time_s"][:, 0]
        assert rows.dtype == np.dtype("S500") and rows.shape[1] == 4
        assert len(rows) % 2 == 0 and len(rows) >= 2
        for (start, stop), (t0, t1) in zip(rows.reshape(-1, 2, 4), t.reshape(-1, 2)):
            assert start[1] == b"Start" and stop[1] == b"Stop" and start[0] == stop[0] and t1 > t0
            assert start[2] in (b"Good", b"Maybe", b"Bad", b"")
    with h5py.File(a, "r") as f:
        assert f["experiment-activities"]["activities"]["data"][0, 0].decode() == POUR


def test_reader_accepts_recording(recordings):
    """The project's ActionSense reader (written from the ActionSense layout alone) takes the synthetic files."""
    from mmsim_core.data.actionsense import ActionSenseRecording

    _, a, _ = recordings
    with ActionSenseRecording(a) as rec:
        rec.validate()
        assert rec.subject == "S00"
        assert rec.available_modalities() == schema.MODALITY_NAMES


def test_deterministic_per_seed(recordings, tmp_path):
    _, a, _ = recordings
    again = generate_recording(tmp_path / "again", 0, seconds=SECONDS, seed=3, activities=[POUR])
    assert again.name == a.name
    with h5py.File(a, "r") as f, h5py.File(again, "r") as g:
        for key in ("myo-left/emg", "tactile-glove-right/tactile_data", "xsens-segments/position_cm",
                    "eye-tracking-video-world/frame_timestamp", "experiment-activities/activities"):
            np.testing.assert_array_equal(f[key]["data"][()], g[key]["data"][()], err_msg=key)
    oa, ob = load_oracle(a), load_oracle(again)
    np.testing.assert_array_equal(oa.states, ob.states)
    np.testing.assert_array_equal(oa.recorded_frames(range(0, 60, 20)), ob.recorded_frames(range(0, 60, 20)))
    other = generate_recording(tmp_path / "other", 0, seconds=6.0, seed=4, activities=[POUR])
    with h5py.File(other, "r") as g, h5py.File(a, "r") as f:
        n = min(len(g["myo-left/emg/data"]), 200)
        assert not np.array_equal(f["myo-left/emg/data"][:n], g["myo-left/emg/data"][:n])


def test_dataset_without_tactile_gloves(tmp_path):
    paths = generate_dataset(tmp_path, subjects=2, seconds=5.0, seed=1, workers=1, tactile=[True, False])
    assert [p.name.rsplit("_", 1)[1] for p in paths] == ["S00.hdf5", "S01.hdf5"]
    with h5py.File(paths[0], "r") as f:
        assert "tactile-glove-left" in f
    with h5py.File(paths[1], "r") as f:
        assert "tactile-glove-left" not in f and "tactile-glove-right" not in f and "myo-left" in f
    from mmsim_core.data.actionsense import ActionSenseRecording

    with ActionSenseRecording(paths[1]) as rec:
        assert "hand_force" not in rec.available_modalities()
    # the world still felt the unrecorded force: the oracle fills it in from its sidecar
    oracle = load_oracle(paths[1])
    idx = np.arange(30, 42)
    assert _mad(oracle.render_clip(idx, {}), oracle.recorded_frames(idx)) < 3.0


def test_generate_dataset_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="subjects must be a positive integer"):
        generate_dataset(tmp_path, subjects=0)
    with pytest.raises(ValueError, match="seconds must be at least 4"):
        generate_dataset(tmp_path, subjects=1, seconds=1.0)
    with pytest.raises(ValueError, match="activity must be one of"):
        generate_recording(tmp_path, 0, seconds=5.0, activities=["Juggle"])


# ----------------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------------
def _objects(oracle, frame):
    return oracle.describe_state(frame)["objects"]


def _lift_window(oracle, step=2):
    """12 frame indices starting when the held pitcher is high in the air."""
    z = np.array([max(o["z"] if o["held"] >= 0 else 0.0 for o in _objects(oracle, i))
                  for i in range(oracle.num_frames)])
    assert z.max() > 4.0, "the pitcher should be lifted in the pour recording"
    start = int(np.argmax(z > 0.7 * z.max()))
    return np.arange(start, start + 12 * step, step)


def _changed(x, y, level: int = 40) -> float:
    """Fraction of pixels whose colour changed by more than ``level`` (of 255) in some channel."""
    return float((np.abs(x.astype(np.int16) - y.astype(np.int16)).max(-1) > level).mean())


def _mad(x, y) -> float:
    return float(np.abs(x.astype(np.float64) - y.astype(np.float64)).mean())


def test_oracle_rerender_matches_video(recordings):
    _, a, b = recordings
    for path in (a, b):
        oracle = load_oracle(path)
        for start, step in ((0, 1), (40, 1), (150, 1), (60, 3)):  # frame steps as in preprocessing
            idx = np.arange(start, start + 12 * step, step)
            acts = oracle.recorded_actions(idx)  # what preprocessing puts in a clip (raw units)
            frames = oracle.render_clip(idx, acts)
            assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8
            assert _mad(frames, oracle.recorded_frames(idx)) < 3.0  # H.264 alone costs ~1.4


def test_oracle_from_normalised_clip_values(recordings):
    """Normalised clip values (dataset) -> ``schema.denormalize`` -> oracle reproduces the clip too."""
    _, a, _ = recordings
    oracle = load_oracle(a)
    idx = _lift_window(oracle)
    raw = oracle.recorded_actions(idx)
    stats = schema.NormalizationStats.fit({n: raw[n] for n in raw})
    back = {n: schema.denormalize(n, schema.normalize(n, raw[n], stats), stats) for n in raw}
    assert _mad(oracle.render_clip(idx, back), oracle.recorded_frames(idx)) < 3.0


@pytest.mark.parametrize("modality", schema.MODALITY_NAMES)
def test_modality_swap_changes_video(recordings, modality):
    """Swap ONLY one modality's raw trajectory with another clip (other scene, other time) and the
    oracle's video changes clearly, far above the re-render noise floor."""
    _, a, b = recordings
    oa, ob = load_oracle(a), load_oracle(b)
    ia = _lift_window(oa)  # pitcher held high: grip force holds it, EMG effort lifts it
    ib = np.arange(0, 12)  # the other subject at rest before the activity: no contact, relaxed muscles
    ra, rb = oa.recorded_actions(ia), ob.recorded_actions(ib)
    base = oa.render_clip(ia, ra)
    video = oa.recorded_frames(ia)
    edited = oa.render_clip(ia, dict(ra, **{modality: rb[modality]}))
    # noise floor: the unchanged re-render against the recorded (H.264) video
    noise, noise_px = _mad(base, video), _changed(base, video)
    change, change_px = _mad(edited, base), _changed(edited, base)
    assert change > 1.5 * noise and change_px > max(0.03, 5 * noise_px), (modality, change, noise, change_px,
                                                                          noise_px)


def test_force_and_emg_act_through_the_world_state(recordings):
    """Without grip force the pitcher is released; without EMG effort it sinks back to the counter
    although the hand stays up (force alone cannot lift a heavy object)."""
    _, a, b = recordings
    oa, ob = load_oracle(a), load_oracle(b)
    ia = _lift_window(oa)
    ra, rb = oa.recorded_actions(ia), ob.recorded_actions(np.arange(0, 12))
    pitcher = next(i for i, o in enumerate(_objects(oa, ia[0])) if o["held"] >= 0)
    times = oa.frame_times[ia]

    def final(acts):
        _, states = world.simulate(oa.scene, oa.state_at(ia[0]), acts, times, render_frames=False)
        return world.object_state(states[-1], pitcher)

    keep = final(ra)
    no_force = final(dict(ra, hand_force=rb["hand_force"]))
    no_emg = final(dict(ra, emg=rb["emg"]))
    assert keep[world.OBJECT_FIELDS.index("held")] >= 0 and keep[world.OBJECT_FIELDS.index("z")] > 4.0
    assert no_force[world.OBJECT_FIELDS.index("held")] < 0 and no_force[world.OBJECT_FIELDS.index("z")] == 0.0
    assert no_emg[world.OBJECT_FIELDS.index("held")] >= 0 and no_emg[world.OBJECT_FIELDS.index("z")] < 1.0


def test_oracle_input_errors(recordings, tmp_path, caplog):
    _, a, _ = recordings
    oracle = load_oracle(a)
    idx = np.arange(12)
    acts = oracle.recorded_actions(idx)
    with pytest.raises(ActionInputError, match="missing \\['emg'\\]"):
        world.render(oracle.scene, oracle.state_at(0), {n: v for n, v in acts.items() if n != "emg"},
                     oracle.frame_times[idx])
    # the recording's oracle fills modalities left out with their recorded values
    np.testing.assert_array_equal(oracle.render_clip(idx, {"emg": acts["emg"]}), oracle.render_clip(idx, acts))
    with pytest.raises(ActionInputError, match="hand_pose"):
        oracle.render_clip(idx, dict(acts, hand_pose=acts["hand_pose"][:, 0]))
    with pytest.raises(ActionInputError, match=r"hand_pose must have shape \(11, 2, 24, 3\)"):
        oracle.render_clip(idx[:11], acts)  # too many steps for the frames
    with pytest.raises(ActionInputError, match=r"emg must have shape \(12, 2, 8\)"):
        oracle.render_clip(idx, dict(acts, emg=acts["emg"][:5]))  # too few steps
    bad = acts["hand_force"].copy()
    bad[3, 0, 4, 4] = np.nan
    with pytest.raises(ActionInputError, match="hand_force contains NaN"):
        oracle.render_clip(idx, dict(acts, hand_force=bad))
    # values the world cannot show are clipped, with the reason logged, never drawn as garbage
    with caplog.at_level("WARNING", logger="mmsim_core.synth.world"):
        wild = oracle.render_clip(idx, dict(acts, emg=np.full_like(acts["emg"], -50.0)))
    assert "emg values outside the world's range" in caplog.text
    np.testing.assert_array_equal(wild, oracle.render_clip(idx, dict(acts, emg=np.zeros_like(acts["emg"]))))
    with pytest.raises(RecordingError, match="no oracle sidecar"):
        load_oracle(tmp_path / "x_streamLog_actionNet-wearables_S09.hdf5")


def test_counterfactual_recordings(tmp_path):
    """K variants per recording: same scene and subject, edited actions, real layout, marked in metadata."""
    import json

    from mmsim_core.data.actionsense import ActionSenseRecording

    src = generate_dataset(tmp_path, subjects=1, seconds=10.0, seed=2, workers=1, counterfactuals=1)[0]
    with h5py.File(src, "r") as f:
        assert "counterfactual" not in f.attrs  # observational
    cf = sorted((tmp_path / "counterfactual").rglob("*.hdf5"))
    assert len(cf) == 1 and cf[0].name == src.name
    with h5py.File(cf[0], "r") as f:
        meta = json.loads(f.attrs["counterfactual"])
    assert meta["source"] == src.name and meta["edits"]
    for e in meta["edits"]:
        assert set(e) == {"family", "start_s", "end_s", "strength", "side"} and e["end_s"] > e["start_s"]
    with ActionSenseRecording(cf[0]) as rec:
        rec.validate()
        assert rec.subject == "S00"
    oc, os_ = load_oracle(cf[0]), load_oracle(src)
    assert oc.scene.to_json() == os_.scene.to_json()
    np.testing.assert_array_equal(oc.states[0], os_.states[0])  # same initial state
    e = meta["edits"][0]
    idx = np.arange(int(e["start_s"] * 30) + 4, int(e["start_s"] * 30) + 16)
    frames = oc.render_clip(idx, oc.recorded_actions(idx))
    assert _mad(frames, oc.recorded_frames(idx)) < 3.0  # its own oracle reproduces its video
    assert _mad(oc.recorded_frames(idx), os_.recorded_frames(idx)) > 0.5  # and the edit changed it


def test_bundled_oracles_let_a_dataset_move_without_its_recordings(recordings, tmp_path, capsys):
    """``mmsim preprocess --bundle-oracles``: each recording's oracle is copied into the dataset and the clips
    name it relative to the dataset folder; moved elsewhere with the raw recordings gone, the oracle contract
    still re-renders the clips (the demo data ships this way)."""
    import shutil

    from mmsim_cli import main
    from mmsim_core.data import ClipDataset

    raw = tmp_path / "raw"
    shutil.copytree(recordings[0], raw)
    assert main(["preprocess", str(raw), str(tmp_path / "proc"), "--frame-steps", "1", "--stride", "20",
                 "--test-subjects", "S01", "--workers", "1", "--bundle-oracles"]) == 0
    shutil.rmtree(raw)
    shutil.move(tmp_path / "proc", tmp_path / "moved")
    ds = ClipDataset(tmp_path / "moved", split="test")
    it = ds[0]
    src = it["meta"]["source"]
    assert src.startswith(str(tmp_path / "moved" / "recordings" / "S01"))
    raw_actions = {m: schema.denormalize(m, v, ds.stats) for m, v in it["actions"].items()}
    frames = load_oracle(src).render_clip(it["meta"]["video_frame_indices"], raw_actions)
    truth = np.concatenate([it["context"], it["future"]])
    assert frames.shape == truth.shape and _mad(frames, truth) < 3.0
    manifest = ds.manifest["recordings"]["used"]
    assert all(r["bundled"][0].endswith(".oracle.npz") for r in manifest)
