"""The planner's learned goal scorer: the model, `mmsim scorer train` (roll-outs labelled by the oracle), and
`mmsim plan --scorer learned`."""

import json

import numpy as np
import pytest
import torch

from mmsim_cli import main
from mmsim_core.errors import ActionInputError, MMSimError
from mmsim_core.policies.goal_scorer import OutcomeGoalScorer
from mmsim_core.policies.scorers import LearnedGoalScorer, make_scorer
from mmsim.training.scorer import validation_metrics


def _frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


def _error(capsys, prog) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_model_round_trip_and_shapes(tmp_path):
    torch.manual_seed(0)
    model = OutcomeGoalScorer(frame_widths=(8, 16, 16, 16), feature_dim=16, hidden_dim=16).eval()
    x = torch.rand(3, 3, 3, 64, 64) * 2 - 1
    logits = model(x[0], x[1], x[2])
    assert logits.shape == (3,)
    model.save_pretrained(tmp_path / "s")
    again = OutcomeGoalScorer.from_pretrained(tmp_path / "s").eval()
    torch.testing.assert_close(again(x[0], x[1], x[2]), logits)
    with pytest.raises(ValueError, match="alike"):
        model(x[0], x[1][:2], x[2])


def test_learned_scorer_scores_probabilities(tmp_path):
    OutcomeGoalScorer(frame_widths=(8, 16, 16, 16), feature_dim=16, hidden_dim=16).save_pretrained(tmp_path / "s")
    scorer = make_scorer("learned", weights=str(tmp_path / "s"))
    ends, goal, start = _frames(5), _frames(1, 1)[0], _frames(1, 2)[0]
    p = scorer.score(ends, goal, start=start)
    assert p.shape == (5,) and np.all((p >= 0) & (p <= 1))
    # one goal/start for all equals the same frame repeated per end frame
    np.testing.assert_allclose(scorer.score(ends, np.repeat(goal[None], 5, 0), start=np.repeat(start[None], 5, 0)),
                               p, rtol=1e-5)
    with pytest.raises(ActionInputError, match="start frame"):
        scorer.score(ends, goal)
    with pytest.raises(ActionInputError, match="goal must be one frame or one per end frame"):
        scorer.score(ends, _frames(2), start=start)
    with pytest.raises(MMSimError, match="mmsim scorer train"):
        LearnedGoalScorer(tmp_path / "nowhere")


def test_validation_metrics_pick_rate():
    clips = [  # K = 3 proposals + the recorded actions (always positive, left out of the pick)
        {"label": np.array([False, True, False, True])},   # mixed: the best-scored proposal (1) reaches it
        {"label": np.array([True, False, False, True])},   # mixed: the best-scored proposal (2) does not
        {"label": np.array([False, False, False, True])},  # none reaches it: not counted in the pick rate
    ]
    probs = [np.array([0.1, 0.9, 0.2, 0.8]), np.array([0.3, 0.1, 0.7, 0.9]), np.array([0.2, 0.2, 0.2, 0.6])]
    m = validation_metrics(clips, probs)
    assert m["pairs"] == 12 and m["positives"] == 5 and m["mixed_clips"] == 2
    assert m["pick_rate"] == pytest.approx(0.5)
    assert m["pick_rate_chance"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0


def test_scorer_train_collects_trains_and_plans_with_it(synth, untrained_checkpoint, tiny_proposer, tmp_path, capsys):
    out = tmp_path / "scorer"
    args = ["scorer", "train", "--data", str(synth), "--simulator", untrained_checkpoint, "--proposer", tiny_proposer,
            "--out", str(out), "--clips", "4", "--samples", "3", "--max-steps", "3", "--batch-size", "4",
            "--width", "tiny", "--val-share", "0.25"]
    assert main(args) == 0, capsys.readouterr().err
    assert "validation: AUC" in capsys.readouterr().out
    pairs = sorted((out / "pairs").glob("clip_*.npz"))
    assert len(pairs) == 4
    with np.load(pairs[0]) as z:
        assert z["end"].shape == (4, 64, 64, 3) and z["label"].shape == (4,) and bool(z["label"][-1])
        assert z["start"].shape == z["goal"].shape == (64, 64, 3)
    report = json.loads((out / "final" / "scorer_training.json").read_text())
    assert report["format"] == "mmsim-scorer-training-v1" and report["clips"] == 4 and report["val_clips"] == 1
    assert report["validation"]["pairs"] == 4
    assert (out / "final" / "config.json").is_file()

    # A second run over the same folder reuses every collected roll-out (a stopped run continues).
    stamps = [p.stat().st_mtime_ns for p in pairs]
    assert main(args) == 0
    assert [p.stat().st_mtime_ns for p in pairs] == stamps

    # Roll-outs of another proposer are not mixed into these.
    code = main([*args[:args.index("--samples")], "--samples", "2", *args[args.index("--samples") + 2:]])
    assert code == 2 and "holds roll-outs collected with another --samples" in _error(capsys, "mmsim scorer train")

    plan_out = tmp_path / "plan.json"
    code = main(["plan", "--simulator", untrained_checkpoint, "--proposer", tiny_proposer, str(synth), "--clips", "1",
                 "--samples", "2", "--scorer", "learned", "--scorer-weights", str(out / "final"),
                 "--out", str(plan_out)])
    assert code == 0, capsys.readouterr().err
    step = json.loads(plan_out.read_text())["steps"][0]
    assert all(0.0 <= s <= 1.0 for s in step["scores"])
    assert step["methods"]["simulator"]["sample"] == int(np.argmax(step["scores"]))


@pytest.mark.parametrize("extra, needle", [
    (["--clips", "1"], "--clips must be >= 2"),
    (["--eventful-share", "2"], "--eventful-share must be in [0, 1]"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--width", "huge"], "--width must be one of"),
])
def test_scorer_train_bad_flags(synth, tiny_proposer, untrained_checkpoint, tmp_path, capsys, extra, needle):
    code = main(["scorer", "train", "--data", str(synth), "--simulator", untrained_checkpoint, "--proposer",
                 tiny_proposer, "--out", str(tmp_path / "s"), *extra])
    assert code == 2 and needle in _error(capsys, "mmsim scorer train")
    assert not (tmp_path / "s").exists()


def test_plan_learned_scorer_needs_weights(synth, untrained_checkpoint, tiny_proposer, tmp_path, capsys):
    code = main(["plan", "--simulator", untrained_checkpoint, "--proposer", tiny_proposer, str(synth),
                 "--scorer", "learned", "--out", str(tmp_path / "p.json")])
    assert code == 2 and "--scorer learned needs --scorer-weights" in _error(capsys, "mmsim plan")
    code = main(["plan", "--simulator", untrained_checkpoint, "--proposer", tiny_proposer, str(synth),
                 "--scorer", "learned", "--scorer-weights", str(tmp_path / "nowhere"), "--goal", "text",
                 "--out", str(tmp_path / "p.json")])
    assert code == 2 and "--scorer learned compares end frames with a goal frame" in _error(capsys, "mmsim plan")
