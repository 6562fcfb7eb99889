"""The bundled demo goal scorer loads, scores demo clips' frames as probabilities, and carries its card."""

import json
from pathlib import Path

import numpy as np

from mmsim_core.data import ClipDataset
from mmsim_core.policies.scorers import LearnedGoalScorer

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "demo_scorer"


def test_demo_scorer_scores_demo_frames():
    scorer = LearnedGoalScorer(FOLDER)
    ds = ClipDataset(ROOT / "examples" / "demo_data", split="test")
    items = [ds[i] for i in range(len(ds))]
    starts = np.stack([it["context"][-1] for it in items])  # (N, 64, 64, 3)
    goals = np.stack([it["future"][-1] for it in items])
    p = scorer.score(goals, goals, start=starts)  # each clip's own goal frame as the end frame
    assert p.shape == (len(items),) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_array_equal(scorer.score(goals, goals, start=starts), p)  # deterministic
    # The goal frame itself shows the goal; another clip's last frame mostly does not (these clips come from
    # another world seed than its training data: 14 of 14, mean 1.00 against 0.58 when measured).
    other = scorer.score(np.roll(goals, 1, axis=0), goals, start=starts)
    assert np.mean(p > other) >= 0.8 and p.mean() > other.mean() + 0.2


def test_demo_scorer_card_and_training_record():
    assert (FOLDER / "README.md").is_file()
    record = json.loads((FOLDER / "scorer_training.json").read_text())
    assert record["format"] == "mmsim-scorer-training-v1" and record["validation"]["auc"] > 0.5
