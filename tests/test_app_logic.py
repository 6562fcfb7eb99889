"""Studio logic without a server: editing operations and history, upload parsers (HDF5 / NPZ / CSV /
images / video, bad inputs), raw-recording cuts, exports read back by ClipDataset."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from mmsim.app import io as sio
from mmsim.app.clip import Clip
from mmsim.app.edits import EditHistory, apply_op, apply_recipe, channel_groups, curves, parse_recipe
from mmsim.app.session import Gallery, Session, clips_to_records
from mmsim_core import schema
from mmsim_core.data import ClipDataset
from mmsim_core.errors import ActionInputError

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo_data"
T = schema.CLIP_FRAMES


@pytest.fixture(scope="module")
def item():
    return ClipDataset(DEMO, split="test")[0]


@pytest.fixture
def actions(item):
    return {k: v.copy() for k, v in item["actions"].items()}


# ----------------------------------------------------------------------------------------------
# Edits
# ----------------------------------------------------------------------------------------------
def test_channel_groups_cover_every_feature():
    for m, spec in schema.MODALITIES.items():
        idx = sorted(i for g in channel_groups(m).values() for i in g)
        assert idx == list(range(spec.size)), m
    assert list(channel_groups("hand_force")) == ["left", "right"]
    assert channel_groups("emg")["R1"] == (8,)


def test_range_ops(actions):
    emg = actions["emg"]
    out = apply_op(actions, {"op": "scale", "modality": "emg", "channels": ["L1"], "start": 4, "end": 7, "amount": 2})
    np.testing.assert_allclose(out["emg"][4:8, 0, 0], 2 * emg[4:8, 0, 0])
    np.testing.assert_array_equal(out["emg"][:4], emg[:4])
    np.testing.assert_array_equal(out["emg"][4:8, 0, 1:], emg[4:8, 0, 1:])  # other channels untouched
    assert out["emg"] is not emg and np.array_equal(actions["emg"], emg)  # input untouched

    out = apply_op(actions, {"op": "offset", "modality": "emg", "channels": "R2", "start": 0, "end": 11, "amount": 0.1})
    np.testing.assert_allclose(out["emg"][:, 1, 1], emg[:, 1, 1] + 0.1, rtol=1e-6)

    out = apply_op(actions, {"op": "zero", "modality": "hand_force", "channels": ["right"], "start": 2, "end": 5})
    assert (out["hand_force"][2:6, 1] == 0).all() and np.array_equal(out["hand_force"][:, 0], actions["hand_force"][:, 0])

    out = apply_op(actions, {"op": "shift", "modality": "emg", "channels": ["L1"], "start": 0, "end": 11, "amount": 2})
    np.testing.assert_array_equal(out["emg"][2:, 0, 0], emg[:-2, 0, 0])  # delayed by two steps
    np.testing.assert_array_equal(out["emg"][:2, 0, 0], emg[0, 0, 0])  # edge held

    spike = dict(actions, emg=np.zeros_like(emg))
    spike["emg"][6, 0, 0] = 1.0
    out = apply_op(spike, {"op": "smooth", "modality": "emg", "channels": ["L1"], "start": 0, "end": 11, "amount": 1})
    assert out["emg"][6, 0, 0] < 1.0 and out["emg"][5, 0, 0] > 0 and abs(out["emg"][:, 0, 0].sum() - 1) < 0.05


def test_set_point_and_tactile_clipping(actions):
    out = apply_op(actions, {"op": "set_point", "modality": "emg", "channels": ["L3"], "step": 5, "value": 0.7})
    assert out["emg"][5, 0, 2] == pytest.approx(0.7)
    hf = dict(actions, hand_force=np.full_like(actions["hand_force"], 0.2))
    out = apply_op(hf, {"op": "set_point", "modality": "hand_force", "channels": ["left"], "step": 5, "value": 0.4})
    assert curves(out, "hand_force", ["left"])["left"][5] == pytest.approx(0.4, rel=1e-5)  # map scaled, shape kept
    out = apply_op(hf, {"op": "scale", "modality": "hand_force", "channels": ["left"], "amount": 100})
    assert out["hand_force"].max() == 1.0  # tactile stays in its fixed [0, 1] range


@pytest.mark.parametrize("op, match", [
    ({"op": "twist", "modality": "emg"}, "edit op must be one of"),
    ({"op": "scale", "modality": "gaze"}, "modality must be one of"),
    ({"op": "scale", "modality": "emg", "channels": ["L9"]}, "unknown emg channel"),
    ({"op": "scale", "modality": "emg", "start": 3, "end": 40}, "outside the clip"),
    ({"op": "set_point", "modality": "emg", "channels": ["L1"], "step": 12, "value": 0}, "step 12 outside"),
    ({"op": "scale", "modality": "emg", "amount": float("inf")}, "non-finite"),
])
def test_bad_edits(actions, op, match):
    with pytest.raises(ActionInputError, match=match):
        apply_op(actions, op)


def test_missing_modality_and_copy(actions):
    no_emg = {k: v for k, v in actions.items() if k != "emg"}
    with pytest.raises(ActionInputError, match="no emg"):
        apply_op(no_emg, {"op": "zero", "modality": "emg"})
    out = apply_op(no_emg, {"op": "copy", "modality": "emg", "source": actions["emg"].tolist()})
    np.testing.assert_array_equal(out["emg"], actions["emg"])
    with pytest.raises(ActionInputError, match="shape"):
        apply_op(no_emg, {"op": "copy", "modality": "emg", "source": np.zeros((3, 2, 8))})


def test_history_undo_redo_reset_and_recipe_replay(actions, item):
    h = EditHistory(actions)
    h.apply({"op": "scale", "modality": "emg", "amount": 2.0})
    h.apply({"op": "zero", "modality": "hand_force", "channels": ["left"], "start": 4, "end": 11})
    edited = {k: v.copy() for k, v in h.current.items()}
    assert h.is_edited() and len(h.recipe) == 2
    with pytest.raises(ActionInputError):
        h.apply({"op": "scale", "modality": "emg", "channels": ["nope"]})
    assert len(h.recipe) == 2  # a failed edit leaves the history alone
    assert h.undo() and len(h.recipe) == 1
    assert h.redo() and np.array_equal(h.current["hand_force"], edited["hand_force"])
    assert not h.redo()
    h.reset()
    assert not h.is_edited() and h.recipe == []
    assert h.undo() and h.is_edited()  # reset itself can be undone
    # The recipe (JSON) replays to the same actions.
    replay = apply_recipe(actions, parse_recipe(json.dumps(h.recipe)))
    for k in edited:
        np.testing.assert_allclose(replay[k], edited[k])


def test_parse_recipe_errors():
    assert parse_recipe("") == []
    assert parse_recipe('{"edits": [{"op": "zero", "modality": "emg"}]}')[0]["op"] == "zero"
    with pytest.raises(ActionInputError, match="not valid JSON"):
        parse_recipe("[{op: scale}]")
    with pytest.raises(ActionInputError, match="op must be one of"):
        parse_recipe('[{"op": "blur"}]')
    with pytest.raises(ActionInputError, match="must be a JSON list"):
        parse_recipe('"scale"')


# ----------------------------------------------------------------------------------------------
# Upload parsers
# ----------------------------------------------------------------------------------------------
def _images(tmp_path, n=4, size=(48, 80)):
    paths = []
    for i in range(n):
        p = tmp_path / f"f{i}.png"
        img = np.full(size + (3,), 40 * i, np.uint8)
        cv2.imwrite(str(p), img)
        paths.append(str(p))
    return paths


def test_npz_with_images(tmp_path, actions):
    p = tmp_path / "traj.npz"
    np.savez(p, emg=actions["emg"], hand_force=actions["hand_force"].reshape(T, -1))  # flattened is fine too
    clip = sio.clip_from_upload(_images(tmp_path), str(p))
    assert clip.context.shape == (4, 64, 64, 3) and clip.future is None
    assert clip.context[2].mean() == pytest.approx(80, abs=1)  # time order from the file names
    np.testing.assert_array_equal(clip.actions["hand_force"], actions["hand_force"])
    assert set(clip.actions) == {"emg", "hand_force"}


def test_npz_raw_units_are_normalised(tmp_path, actions):
    stats = ClipDataset(DEMO, split="test").stats
    raw = schema.denormalize("emg", actions["emg"], stats)
    p = tmp_path / "raw.npz"
    np.savez(p, emg=raw, units="raw")
    traj = sio.read_trajectories(str(p), stats=stats)
    np.testing.assert_allclose(traj["actions"]["emg"], actions["emg"], atol=1e-5)


def test_csv_round_trip_and_video(tmp_path, actions, item):
    p = sio.write_csv(tmp_path / "traj.csv", actions)
    traj = sio.read_trajectories(str(p))
    for k in actions:
        np.testing.assert_allclose(traj["actions"][k], actions[k], rtol=1e-5, atol=1e-6)
    from mmsim_core.video import write_video

    vid = write_video(tmp_path / "clip.mp4", np.concatenate([item["context"], item["future"]]), fps=10, quality=10)
    clip = sio.clip_from_upload([str(vid)], str(p))
    assert clip.future is not None and clip.future.shape == (8, 64, 64, 3)  # 12 frames: ground truth too
    assert np.abs(clip.context.astype(int) - item["context"]).mean() < 12  # lossy codec, same content


def test_h5_shard_and_export_round_trip(tmp_path, item):
    clip = Clip.from_item(item, label="demo")
    clip.edits.apply({"op": "scale", "modality": "emg", "amount": 1.5})
    clip.annotations.append(sio.Annotation(4, 11, "Peel a potato", "peel", "peel potato", "person peel potato"))
    out = sio.export_clip(clip, tmp_path / "edited.h5")
    up = sio.clip_from_upload(None, str(out))  # frames come from the file
    np.testing.assert_array_equal(up.actions["emg"], clip.actions["emg"])
    np.testing.assert_array_equal(up.future, item["future"])
    assert up.annotations[0].activity == "Peel a potato"
    assert up.text_condition("sentence") == "person peel potato"  # annotation used as the text condition
    # A preprocess shard loads too (row 0).
    shard = DEMO / "test" / "shard_0000.h5"
    traj = sio.read_trajectories(str(shard))
    np.testing.assert_array_equal(traj["actions"]["emg"], item["actions"]["emg"])


@pytest.mark.parametrize("kind, match", [
    ("txt", "must be a clip .h5"),
    ("bad_h5", "not a readable HDF5"),
    ("no_actions", "no 'actions' group"),
    ("bad_shape", "must have shape"),
    ("nan", "NaN"),
    ("short", "needs 12"),
    ("unknown", "unknown arrays"),
    ("csv_cols", "is not '<modality>_<index>'"),
    ("csv_missing", "missing"),
])
def test_bad_trajectory_uploads(tmp_path, kind, match):
    p = tmp_path / "x"
    if kind == "txt":
        p = tmp_path / "x.txt"
        p.write_text("hello")
    elif kind == "bad_h5":
        p = tmp_path / "x.h5"
        p.write_bytes(b"not hdf5")
    elif kind == "no_actions":
        p = tmp_path / "x.h5"
        with h5py.File(p, "w") as f:
            f["frames"] = np.zeros((1, 12, 64, 64, 3), np.uint8)
    elif kind in ("bad_shape", "nan", "short", "unknown"):
        p = tmp_path / "x.npz"
        arr = {"bad_shape": np.zeros((12, 3, 8)), "short": np.zeros((5, 2, 8))}.get(kind, np.zeros((12, 2, 8)))
        if kind == "nan":
            arr[3, 0, 0] = np.nan
        extra = {"gaze": np.zeros(3)} if kind == "unknown" else {}
        np.savez(p, emg=arr, **extra)
    elif kind == "csv_cols":
        p = tmp_path / "x.csv"
        p.write_text("step,force\n0,1\n")
    elif kind == "csv_missing":
        p = tmp_path / "x.csv"
        p.write_text("step,emg_0,emg_1\n" + "".join(f"{t},0,0\n" for t in range(12)))
    with pytest.raises(sio.UploadError, match=match):
        sio.read_trajectories(str(p))


def test_bad_frame_uploads(tmp_path, actions):
    traj = tmp_path / "t.npz"
    np.savez(traj, emg=actions["emg"])
    with pytest.raises(sio.UploadError, match="exactly 4 context images"):
        sio.clip_from_upload(_images(tmp_path, 3), str(traj))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(sio.UploadError, match="not a readable image"):
        sio.clip_from_upload(_images(tmp_path, 3) + [str(bad)], str(traj))
    with pytest.raises(sio.UploadError, match="trajectory file has no frames"):
        sio.clip_from_upload(None, str(traj))
    with pytest.raises(sio.UploadError, match="upload a trajectory file"):
        sio.clip_from_upload(_images(tmp_path), None)


def test_oversized_upload_rejected(tmp_path, monkeypatch):
    p = tmp_path / "big.npz"
    np.savez(p, emg=np.zeros((12, 2, 8)))
    monkeypatch.setattr(sio, "MAX_UPLOAD_MB", 1e-4)
    with pytest.raises(sio.UploadError, match="uploads are limited to"):
        sio.check_size(p, max_mb=sio.MAX_UPLOAD_MB)


# ----------------------------------------------------------------------------------------------
# Raw recordings, annotations, dataset export
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def raw_recording(tmp_path_factory):
    from mmsim_core.synth import generate_dataset

    out = tmp_path_factory.mktemp("raw")
    generate_dataset(out, subjects=1, seconds=6, seed=3, workers=1)
    h5 = next(out.rglob("*.hdf5"))
    video = next(p for p in h5.parent.glob("*.mp4") if "eye-tracking-video-world" in p.name)
    return h5, video


def test_cut_clips_from_raw_recording_with_annotations(raw_recording, tmp_path):
    h5, video = raw_recording
    stats = ClipDataset(DEMO, split="test").stats
    s = Session()
    summary = s.open_raw(str(h5), str(video))
    assert "modalities" in summary
    s.annotate(0.0, 5.0, "Peel a potato", "", "", "", unit="s")
    clip = s.cut(1.0, stats)
    assert clip.context.shape == (4, 64, 64, 3) and clip.future.shape == (8, 64, 64, 3)
    assert set(clip.actions) <= set(schema.MODALITY_NAMES) and clip.actions
    assert clip.text_condition("phrase") == "peel potato"  # the recording's span labels the cut
    s.cut(2.0, stats, frame_step=2)
    with pytest.raises(sio.UploadError, match="outside the recording"):
        s.cut(1e4, stats)
    manifest = sio.write_dataset(tmp_path / "cuts", clips_to_records(s.cuts), stats)
    ds = ClipDataset(tmp_path / "cuts", split="train")
    assert len(ds) == manifest["splits"]["train"]["num_clips"] == 2
    got = ds[0]
    np.testing.assert_array_equal(got["context"], s.cuts[0].context)
    assert got["meta"]["annotations"][0]["activity"] == "Peel a potato"
    assert got["text"]["phrase"] == "peel potato"


def test_raw_recording_errors(tmp_path, raw_recording):
    with pytest.raises(sio.UploadError):
        sio.RawRecording(str(tmp_path / "missing.hdf5"))
    h5, _ = raw_recording
    other = tmp_path / "lonely.hdf5"
    other.write_bytes(h5.read_bytes())
    with pytest.raises(sio.UploadError, match="video"):
        sio.RawRecording(str(other))  # no world video beside it, none given


def test_gallery_selection_and_batch_records(tmp_path):
    g = Gallery.load(DEMO)
    splits = json.loads((DEMO / "manifest.json").read_text())["splits"]
    assert len(g) == splits["train"]["num_clips"] + splits["test"]["num_clips"] > 40
    assert g.select("0-2,5") == [0, 1, 2, 5]
    assert len(g.select("test")) == splits["test"]["num_clips"]
    with pytest.raises(ActionInputError, match="no clips"):
        g.select("40-60")
    with pytest.raises(ActionInputError):
        g.select("a-b")
    with pytest.raises(ActionInputError, match="does not exist"):
        g.clip(99)
    s = Session()
    s.set_clip(g.clip(1))
    with pytest.raises(ActionInputError, match="span"):
        s.annotate(3, 20, "Slice a cucumber", "", "", "")
    ann = s.annotate(4, 11, "Slice a cucumber", "", "", "")
    assert ann.verb == "slice" and ann.sentence.startswith("person")
    assert s.annotation_rows()[0][4] == "Slice a cucumber"


# ----------------------------------------------------------------------------------------------
# Controls (the quantities people think in), flags, model card, world view hook
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("modality,name,value", [("hand_force", "right total", 40.0), ("hand_force", "left palm", 5.0),
                                                 ("hand_pose", "L grip aperture", 0.2),
                                                 ("hand_pose", "R index extension", 0.1),
                                                 ("body_pose", "R hand height", 0.9), ("emg", "L envelope", 0.5)])
def test_controls_set_point_reaches_the_value(actions, modality, name, value):
    from mmsim.app.edits import control_measure

    out = apply_op(actions, {"op": "set_point", "modality": modality, "channels": [name], "step": 6, "value": value})
    assert control_measure(out, modality, name)[6] == pytest.approx(value, rel=1e-4)
    untouched = [t for t in range(T) if t != 6]
    np.testing.assert_array_equal(out[modality][untouched], actions[modality][untouched])


def test_control_range_ops_and_pose_geometry(actions):
    from mmsim.app.edits import control_measure

    out = apply_op(actions, {"op": "scale", "modality": "hand_pose", "channels": ["L grip aperture"], "start": 4,
                             "end": 11, "amount": 2.0})
    ratio = control_measure(out, "hand_pose", "L grip aperture") / control_measure(actions, "hand_pose", "L grip aperture")
    np.testing.assert_allclose(ratio, [1] * 4 + [2] * 8, rtol=1e-4)
    np.testing.assert_array_equal(out["hand_pose"][:, 1], actions["hand_pose"][:, 1])  # the other hand untouched
    np.testing.assert_array_equal(out["hand_pose"][:, 0, 0], actions["hand_pose"][:, 0, 0])  # the Carpus stays
    # A finger curls towards the Carpus: every joint moves, the direction from the Carpus is kept.
    out = apply_op(actions, {"op": "scale", "modality": "hand_pose", "channels": ["R index extension"], "start": 0,
                             "end": 11, "amount": 0.5})
    chain = list(schema.HAND_CHAINS["index"][1:])
    np.testing.assert_allclose(out["hand_pose"][:, 1, chain] - out["hand_pose"][:, 1, :1],
                               0.5 * (actions["hand_pose"][:, 1, chain] - actions["hand_pose"][:, 1, :1]), atol=1e-6)
    # Raw channels and controls together (the editor's default EMG view): raw first, then the control.
    out = apply_op(actions, {"op": "offset", "modality": "emg", "channels": ["L1", "R envelope"], "amount": 0.1})
    np.testing.assert_allclose(out["emg"][:, 0, 0], actions["emg"][:, 0, 0] + 0.1, rtol=1e-5)
    np.testing.assert_allclose(out["emg"][:, 1], actions["emg"][:, 1] + 0.1, rtol=1e-5)


def test_out_of_range_flags_and_export_pairs_edits_with_their_frames(tmp_path, item):
    from mmsim.app.session import out_of_range

    clip = Clip.from_item(item)
    assert out_of_range(clip) == []
    clip.edits.apply({"op": "scale", "modality": "emg", "channels": ["L1"], "start": 0, "end": 11, "amount": 1000})
    assert any("EMG" in w for w in out_of_range(clip))
    fake_prediction = np.full_like(item["future"], 7)
    path = sio.export_clip(clip, tmp_path / "e.h5", fake_prediction, prefer="prediction", generator="m")
    res = sio.read_trajectories(path)
    assert res["meta"]["future_source"] == "generated for these actions by m" and res["meta"]["edited"]
    assert (res["frames"][4:] == 7).all()
    res = sio.read_trajectories(sio.export_clip(Clip.from_item(item), tmp_path / "r.h5", fake_prediction))
    assert res["meta"]["future_source"] == "recorded" and np.array_equal(res["frames"][4:], item["future"])


def test_model_card_steps_control_and_world_hook(demo_tiny_checkpoint):
    from mmsim.app.engine import Engine, card_markdown, load_model, steps_control

    pipe, info = load_model(str(demo_tiny_checkpoint))
    engine = Engine(pipe, info)
    card = engine.card
    assert card["parameters"] > 0 and card["default_steps"] == pipe.config.default_num_inference_steps
    default, maximum, note = steps_control(card)
    assert 1 <= default <= maximum and note
    assert card["preset"] in card_markdown(card, info)
    # The demo clips carry their world's oracle (bundled under recordings/): the world view re-renders them,
    # the recorded actions giving back the recorded future (up to video compression), an edit changing it.
    g = Gallery.load(DEMO, limit=2)
    clip = g.clip(0)
    world = engine.world_frames(clip)
    assert world.shape == clip.future.shape and world.dtype == np.uint8
    assert np.abs(world.astype(float) - clip.future).mean() < 4.0
    edited = {**clip.actions, "body_pose": clip.actions["body_pose"][::-1].copy()}
    assert np.abs(engine.world_frames(clip, edited).astype(float) - world).mean() > 1.0
    # A clip whose recording left no oracle (a real recording, an upload) has no world view.
    clip.meta = {**clip.meta, "source": "/nonexistent/recording.hdf5"}
    assert engine.world_frames(clip) is None


def test_world_view_under_another_normalisation_and_control_scores(demo_tiny_checkpoint):
    """A checkpoint normalising differently from the bundled clips: the gallery adopts the model's statistics,
    so the world view still gives back the recorded future; the control score follows its definitions; only
    the bundled data may name an oracle."""
    from mmsim.app.engine import Engine, control_markdown, control_scores, load_model

    pipe, info = load_model(str(demo_tiny_checkpoint))
    base = pipe.normalization_stats
    wider = schema.NormalizationStats(minimum={m: v - 0.5 * (base.maximum[m] - v) for m, v in base.minimum.items()},
                                      maximum={m: v + 0.5 * (v - base.minimum[m]) for m, v in base.maximum.items()})
    engine = Engine(pipe, info, stats=wider)
    g = Gallery.load(DEMO, limit=2)
    recorded = {m: schema.denormalize(m, v, g.stats) for m, v in g.items[0]["actions"].items()}
    g.adopt_stats(wider)
    clip = g.clip(0)
    for m, v in clip.actions.items():  # the same raw values, expressed in the model's normalisation
        np.testing.assert_allclose(schema.denormalize(m, v, wider), recorded[m], rtol=1e-4, atol=1e-3)
    world = engine.world_frames(clip)
    assert np.abs(world.astype(float) - clip.future).mean() < 4.0

    engine.world_roots = (DEMO.resolve(),)
    assert engine.world_frames(clip) is not None
    engine.world_roots = (Path("/nonexistent").resolve(),)  # an upload naming a recording elsewhere
    assert engine.world_frames(clip) is None

    # The definitions: a prediction equal to the world's edited future gains over one that ignored the edit
    # and moves exactly the right pixels; ignoring the edit gains nothing and moves nothing.
    edited = {**clip.actions, "body_pose": clip.actions["body_pose"][::-1].copy()}
    engine.world_roots = None
    w_edit, w_orig = engine.world_frames(clip, edited), world
    perfect = control_scores(w_edit, w_edit, before=w_orig, world_before=w_orig)
    assert perfect["gain_psnr"] > 5 and perfect["delta_cosine"] == pytest.approx(1.0) and perfect["visible"]
    blind = control_scores(w_orig, w_edit, before=w_orig, world_before=w_orig)
    assert blind["gain_psnr"] == pytest.approx(0.0) and blind["delta_cosine"] == 0.0
    assert "gain" in control_markdown(perfect) and "gain" not in control_markdown(control_scores(w_orig, w_edit))
