"""Propose actions in the studio: an untrained tiny action proposer fills the session's trajectories (one edit,
undone by one Undo), samples switch in place, a goal frame ranks them with the simulator, the paired export
writes a zip whose action files round-trip through the studio's loader; without a proposer (or with one that
does not fit the simulator or the clip) the studio says so in one line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmsim.app import io as sio
from mmsim.app import propose as P
from mmsim.app.clip import Clip
from mmsim.app.edits import EditHistory
from mmsim.app.engine import Engine, load_model
from mmsim.app.session import Gallery, Session
from mmsim_core import schema
from mmsim_core.data import ClipDataset
from mmsim_core.errors import ActionInputError, MMSimError

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo_data"
K = 3


def _save_proposer(path: Path, stats, **overrides) -> Path:
    import torch

    from mmsim_core.policies.proposer import ActionProposalPipeline
    from mmsim.training.proposer import WIDTHS

    torch.manual_seed(0)
    ActionProposalPipeline.untrained(stats, **{**WIDTHS["tiny"], **overrides}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def demo_stats():
    return ClipDataset(DEMO, split="test").stats


@pytest.fixture(scope="module")
def proposer_dir(tmp_path_factory, demo_stats):
    """An untrained tiny action proposer saved with the demo clips' statistics."""
    return _save_proposer(tmp_path_factory.mktemp("proposer") / "tiny", demo_stats)


@pytest.fixture(scope="module")
def engine(demo_tiny_checkpoint):
    pipe, info = load_model(str(demo_tiny_checkpoint))
    return Engine(pipe, info)


@pytest.fixture(scope="module")
def gallery(engine):
    g = Gallery.load(DEMO, limit=4)
    g.adopt_stats(engine.stats)
    return g


@pytest.fixture(scope="module")
def proposer(proposer_dir, engine):
    prop, status = P.resolve_proposer(str(proposer_dir), engine)
    assert prop is not None and "Proposer" in status and "⚠️" not in status  # same statistics: no conversion
    return prop


@pytest.fixture
def session(gallery):
    s = Session()
    s.set_clip(gallery.clip(0))
    return s


def _copy(actions):
    return {m: v.copy() for m, v in actions.items()}


def test_proposals_fill_the_trajectories_and_one_undo_restores(session, proposer):
    clip = session.clip
    before = _copy(clip.actions)
    pset = P.propose(session, proposer, text="lift the cup", num_samples=K, seed=0)
    h, T = clip.h, clip.num_steps
    for m, spec in schema.MODALITIES.items():
        assert pset.actions[m].shape == (K, T, *spec.shape) and pset.actions[m].dtype == np.float32
        assert clip.actions[m].shape == (T, *spec.shape)
        np.testing.assert_array_equal(clip.actions[m][:h], before[m][:h])  # the history stays the clip's
        np.testing.assert_array_equal(clip.actions[m], pset.actions[m][0])  # the first sample is in use
        assert not np.array_equal(clip.actions[m][h:], before[m][h:])  # the future changed
    assert pset.picked == 0 and pset.order == list(range(K))
    # Through the normal edit path: the recipe names the proposal, and one Undo takes the whole of it back.
    recipe = clip.edits.recipe
    assert [r["op"] for r in recipe] == ["copy"] * 4 and {r["proposal"] for r in recipe} == {1}
    assert clip.edits.undo()
    for m in before:
        np.testing.assert_array_equal(clip.actions[m], before[m])
    assert clip.edits.recipe == [] and not clip.edits.is_edited()
    assert clip.edits.redo()
    np.testing.assert_array_equal(clip.actions["emg"], pset.actions["emg"][0])


def test_switching_samples_replaces_the_pick_and_reset_returns_to_the_recording(session, proposer):
    clip = session.clip
    before = _copy(clip.actions)
    pset = P.propose(session, proposer, text="", num_samples=K, seed=1)
    for k in (2, 1):
        P.pick(session, k)
        for m in schema.MODALITY_NAMES:
            np.testing.assert_array_equal(clip.actions[m], pset.actions[m][k])
        assert len(clip.edits.recipe) == 4  # the pick replaced the previous one
    assert not np.array_equal(pset.actions["hand_force"][1], pset.actions["hand_force"][2])  # samples differ
    assert "**sample 2" in P.report(pset)  # the one in use is marked
    clip.edits.undo()  # one Undo: back to before the proposals, whatever was picked in between
    np.testing.assert_array_equal(clip.actions["hand_pose"], before["hand_pose"])
    # After a hand edit a pick no longer replaces: the edit stays in the history, one Undo away.
    P.pick(session, 0)
    session.edit({"op": "scale", "modality": "emg", "channels": ["L1"], "start": 4, "end": 11, "amount": 2.0})
    edited = _copy(clip.actions)
    P.pick(session, 1)
    clip.edits.undo()
    np.testing.assert_array_equal(clip.actions["emg"], edited["emg"])
    clip.edits.reset()
    np.testing.assert_array_equal(clip.actions["emg"], before["emg"])
    with pytest.raises(ActionInputError, match="samples 1 to 3"):
        P.pick(session, K)


def test_proposals_are_seeded_and_take_the_edited_history(session, proposer):
    a = P.propose(session, proposer, text="lift the cup", num_samples=2, seed=5, apply=False)
    b = P.propose(session, proposer, text="lift the cup", num_samples=2, seed=5, apply=False)
    c = P.propose(session, proposer, text="lift the cup", num_samples=2, seed=6, apply=False)
    np.testing.assert_array_equal(a.actions["emg"], b.actions["emg"])
    assert not np.array_equal(a.actions["emg"], c.actions["emg"])
    # An edit of the context steps is the history the proposer continues from.
    session.edit({"op": "offset", "modality": "emg", "channels": ["L1"], "start": 0, "end": 3, "amount": 0.2})
    d = P.propose(session, proposer, text="lift the cup", num_samples=2, seed=5, apply=False)
    np.testing.assert_array_equal(d.actions["emg"][:, :4], np.repeat(session.clip.actions["emg"][None, :4], 2, 0))


def test_a_goal_frame_ranks_the_samples_with_the_simulator(session, proposer, engine, tmp_path):
    goal = tmp_path / "goal.png"
    cv2.imwrite(str(goal), cv2.cvtColor(np.ascontiguousarray(session.clip.future[-1]), cv2.COLOR_RGB2BGR))
    pset = P.propose(session, proposer, text="", goal=str(goal), num_samples=K, seed=0)
    assert pset.goal.shape == (64, 64, 3) and pset.goal.dtype == np.uint8
    P.rank(session, engine, list(engine.modalities), None, seed=0, steps=1)
    assert len(pset.scores) == K and sorted(pset.order) == list(range(K))
    assert [pset.scores[k] for k in pset.order] == sorted(pset.scores, reverse=True)
    assert pset.choices()[0] == (pset.label(pset.order[0]), pset.order[0]) and "score" in pset.choices()[0][0]
    grid = P.ranked_grid(pset)
    assert grid.dtype == np.uint8 and grid.shape[0] > 3 * 64  # one row per sample
    # Ranking without a goal frame is refused in one line; a goal may also be an array (RGBA here).
    plain = P.propose(session, proposer, num_samples=2, seed=0)
    with pytest.raises(ActionInputError, match="needs a goal frame"):
        P.rank(session, engine, list(engine.modalities))
    assert plain.scores is None
    rgba = np.zeros((120, 90, 4), np.uint8)
    assert P.read_goal(rgba).shape == (64, 64, 3)
    with pytest.raises(ActionInputError, match="goal frame"):
        P.read_goal(np.zeros((5,), np.uint8))
    with pytest.raises(ActionInputError, match="samples \\(K\\)"):
        P.propose(session, proposer, num_samples=0)


def test_a_learned_goal_scorer_ranks_by_its_probability(session, proposer, engine, tmp_path, capsys):
    """With a learned goal scorer the ranking is its probability that the simulated end frame shows the goal's
    outcome (given the clip's last context frame); the report says which scorer ranked."""
    import torch

    from mmsim_core.policies.goal_scorer import OutcomeGoalScorer
    from mmsim.app.cli import create_app, main

    torch.manual_seed(0)
    OutcomeGoalScorer(frame_widths=(8, 16, 16, 16), feature_dim=16, hidden_dim=16).save_pretrained(tmp_path / "sc")
    scorer, note = P.resolve_scorer(str(tmp_path / "sc"))
    assert scorer is not None and "learned goal scorer" in note
    pset = P.propose(session, proposer, goal=session.clip.future[-1], num_samples=K, seed=0)
    P.rank(session, engine, list(engine.modalities), None, seed=0, steps=1, scorer=scorer)
    ends = np.stack([pset.renders[next(key for key in pset.renders if key[0] == k)][-1] for k in range(K)])
    expected = scorer.score(ends, pset.goal, start=session.clip.context[-1])
    np.testing.assert_allclose(pset.scores, expected, rtol=1e-5)
    assert pset.order == [int(k) for k in np.argsort(-expected, kind="stable")]
    assert pset.score_settings["scorer"] == "learned" and "learned goal scorer" in P.report(pset)
    # Without one, the bundled demo scorer or the embedding; the studio's panel names which ranks.
    demo, _ = create_app(str(engine.info.source), str(DEMO), proposer=str(proposer.source), scorer=str(tmp_path / "sc"))
    panel = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "propose-status")
    assert "learned goal scorer (sc)" in panel.value
    code = main(["--checkpoint", str(engine.info.source), "--data", str(DEMO), "--scorer", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 1 and "--scorer folder" in err and "mmsim scorer train" in err and "Traceback" not in err
    with pytest.raises(MMSimError, match="mmsim scorer train"):
        P.resolve_scorer(str(tmp_path))


def test_export_writes_a_paired_dataset_whose_actions_round_trip(session, proposer, engine, tmp_path):
    pset = P.propose(session, proposer, text="lift the cup", num_samples=K, seed=2)
    P.pick(session, 1)
    done = []
    zpath, manifest = P.export_proposals(session, engine, proposer, list(engine.modalities), None, seed=3, steps=1,
                                         on_sample=lambda i, n: done.append((i, n)))
    assert done[-1] == (K, K)
    with zipfile.ZipFile(zpath) as z:
        z.extractall(tmp_path / "x")
    out = tmp_path / "x"
    m = json.loads((out / "manifest.json").read_text())
    assert m == json.loads(json.dumps(manifest))
    assert m["format"] == "mmsim-proposals-v1" and m["num_samples"] == K and len(m["samples"]) == K
    assert m["text_goal"] == "lift the cup" and m["seed"] == 2 and m["render_seed"] == 3 and m["steps"] == 1
    assert m["clip"]["index"] == 0 and m["proposer"] == pset.proposer and m["simulator"] == engine.info.source
    assert [e["picked"] for e in m["samples"]] == [False, True, False]
    assert (out / "normalization.json").is_file()
    for e in m["samples"]:
        k = e["index"]
        traj = sio.read_trajectories(out / e["actions"])  # the studio's own loader
        for name in schema.MODALITY_NAMES:
            np.testing.assert_array_equal(traj["actions"][name], pset.actions[name][k])
        assert traj["frames"].shape == (12, 64, 64, 3)
        np.testing.assert_array_equal(traj["frames"][:4], session.clip.context)
        assert traj["meta"]["proposal"]["sample"] == k + 1 and traj["meta"]["future_source"].startswith("generated")
        csv = sio.read_trajectories(out / e["actions_csv"])
        np.testing.assert_allclose(csv["actions"]["emg"], pset.actions["emg"][k], atol=1e-5)
        assert (out / e["video"]).stat().st_size > 1000
    # The export's renders are the ones Generate would give for that sample with the same settings.
    P.pick(session, 0)
    res = engine.render(session.clip, list(engine.modalities), None, 3, 1)
    traj = sio.read_trajectories(out / m["samples"][0]["actions"])
    np.testing.assert_array_equal(traj["frames"][4:], res["frames"])


def test_bad_state_and_no_proposer_say_what_to_do(session, engine, proposer, monkeypatch, tmp_path):
    with pytest.raises(ActionInputError, match="Propose actions first"):
        P.export_proposals(session, engine, proposer, ["emg"])
    with pytest.raises(ActionInputError, match="Propose actions first"):
        P.pick(session, 0)
    with pytest.raises(ActionInputError, match="load a clip first"):
        P.propose(Session(), proposer)
    # No proposer: the panel's message says how to train one and how to pass it.
    monkeypatch.setattr(P, "DEFAULT_PROPOSER", tmp_path / "none")
    prop, status = P.resolve_proposer(None, engine)
    assert prop is None and status == P.NO_PROPOSER
    assert "mmsim proposer train --data PROC --out RUN" in status and "--proposer RUN/final" in status
    with pytest.raises(MMSimError, match="proposer folder"):
        P.propose(session, None)
    # Proposals of one clip do not follow the session to another.
    P.propose(session, proposer, num_samples=2)
    session.set_clip(session.clip)
    assert session.proposals is None


def test_a_proposer_that_does_not_fit_says_so_in_one_line(session, engine, demo_stats, proposer, tmp_path,
                                                          monkeypatch):
    # Another context length than the simulator's: refused when named, a panel message when it is the default.
    short = _save_proposer(tmp_path / "short", demo_stats, history=2)
    with pytest.raises(MMSimError) as e:
        P.load_proposer(short, engine)
    assert "2 context + 8 future steps" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setattr(P, "DEFAULT_PROPOSER", short)
    prop, status = P.resolve_proposer(None, engine)
    assert prop is None and "cannot be used" in status and "2 context" in status
    # Not a proposer folder, or none at all.
    with pytest.raises(MMSimError, match="not an action proposer folder"):
        P.load_proposer(tmp_path, engine)
    with pytest.raises(MMSimError, match="does not exist"):
        P.load_proposer(tmp_path / "missing", engine)
    # Other normalisation statistics: converted through raw units, and the panel says so.
    wide = schema.NormalizationStats(minimum={k: v - 1.0 for k, v in demo_stats.minimum.items()},
                                     maximum={k: v + 1.0 for k, v in demo_stats.maximum.items()})
    other = P.load_proposer(_save_proposer(tmp_path / "wide", wide), engine)
    assert "other normalisation statistics" in other.status() and "emg" in other.note
    pset = P.propose(session, other, num_samples=2, seed=0)
    assert all(np.isfinite(v).all() for v in pset.actions.values())
    np.testing.assert_array_equal(pset.actions["emg"][:, :4], np.repeat(session.clip.original_actions["emg"][None, :4], 2, 0))
    # A clip the proposer cannot take: one line naming what is missing.
    acts = {m: v for m, v in session.clip.original_actions.items() if m != "emg"}
    lacking = Clip(context=session.clip.context, future=None, edits=EditHistory(acts), label="upload")
    s2 = Session()
    s2.set_clip(lacking)
    with pytest.raises(ActionInputError, match="this clip has no emg"):
        P.propose(s2, proposer)


def test_studio_cli_takes_a_proposer_flag(demo_tiny_checkpoint, proposer_dir, tmp_path, capsys):
    from mmsim.app.cli import build_parser, create_app, main

    assert build_parser().parse_args(["--proposer", "x"]).proposer == "x"
    code = main(["--checkpoint", str(demo_tiny_checkpoint), "--data", str(DEMO), "--proposer",
                 str(tmp_path / "missing")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mmsim app: error:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "proposer folder" in lines[0] and "does not exist" in lines[0] and "mmsim proposer train" in lines[0]
    demo, engine = create_app(str(demo_tiny_checkpoint), str(DEMO), proposer=str(proposer_dir))
    assert "propose" in {getattr(fn, "api_name", None) for fn in demo.fns.values()}


def _handler(demo, api_name):
    return next(fn.fn for fn in demo.fns.values() if getattr(fn, "api_name", None) == api_name)


def test_studio_without_a_proposer_shows_the_message_and_warns(demo_tiny_checkpoint, monkeypatch, tmp_path):
    import gradio as gr

    from mmsim.app.cli import create_app

    monkeypatch.setattr(P, "DEFAULT_PROPOSER", tmp_path / "none")
    demo, _ = create_app(str(demo_tiny_checkpoint), str(DEMO))
    panel = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "propose-status")
    assert panel.value == P.NO_PROPOSER
    s = Session()
    with pytest.warns(UserWarning, match="mmsim proposer train"):
        out = _handler(demo, "propose")(s, "lift the cup", None, 4, True, ["emg"], "", False, 0, 1, "emg", [], 0)
    assert out[1] == f"⚠️ {P.NO_PROPOSER}"  # the report says it; every other output is left as it was
    assert all(o == gr.skip() for i, o in enumerate(out) if i != 1)
    with pytest.warns(UserWarning, match="proposer folder"):
        files, msg = _handler(demo, "export_proposals")(s, ["emg"], "", False, 0, 1)
    assert files == gr.skip() and "mmsim proposer train" in msg


def test_propose_pick_and_export_through_the_api(demo_tiny_checkpoint, proposer_dir, tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    from conftest import _free_port
    from mmsim.app.cli import create_app, launch

    demo, engine = create_app(str(demo_tiny_checkpoint), str(DEMO), proposer=str(proposer_dir))
    port = _free_port()
    launch(demo, "127.0.0.1", port, concurrency=2, prevent_thread_lock=True)
    try:
        c = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        _, msg = c.predict(["emg"], "", False, 0, 1, api_name="/export_proposals")  # no clip: a warning
        assert msg.startswith("⚠️ load a clip first")
        loaded = c.predict(clip=1, modality="emg", channels=["L1"], api_name="/load_clip")
        curve = loaded[4]["series"][0]["values"]  # L1 of the curve editor
        pick, report, _grid, editor, status, recipe = c.predict(
            "lift the cup", None, 3, True, list(engine.modalities), "", False, 0, 1, "emg", ["L1"], 0,
            api_name="/propose")
        assert "3 proposal(s)" in report and "Not ranked" in report and "4 edit(s)" in status
        assert recipe.startswith('[{"op": "copy", "modality": "hand_pose"')
        assert editor["series"][0]["values"][:4] == curve[:4] and editor["series"][0]["values"] != curve
        _, report2, _, editor2, status2, _ = c.predict(2, "emg", ["L1"], 0, api_name="/pick_proposal")
        assert "**sample 3" in report2 and "4 edit(s)" in status2
        zpath, msg = c.predict(list(engine.modalities), "", False, 0, 1, api_name="/export_proposals")
        assert "3 (actions, video) pairs" in msg and "/tmp" not in msg
        with zipfile.ZipFile(zpath) as z:
            m = json.loads(z.read("manifest.json"))
        assert m["num_samples"] == 3 and [e["picked"] for e in m["samples"]] == [False, False, True]
    finally:
        demo.close()
