"""Task outcomes read from the synthetic world's states, and the oracle rollout that produces them."""

import numpy as np

from mmsim_core import schema
from mmsim_core.data import ClipDataset
from mmsim_core.policies import actions_to_vector, vector_to_actions
from mmsim_core.synth import load_oracle
from mmsim_core.synth.outcome import describe, goal_reached, label_agreement, rollout, state_outcome


def _raw(ds, item):
    return {n: schema.denormalize(n, item["actions"][n], ds.stats) for n in item["actions"]}


def test_recorded_actions_reach_their_own_goal_and_rollout_matches_render_clip(synth):
    ds = ClipDataset(synth, "train")
    item = ds[len(ds) // 2]
    meta = item["meta"]
    oracle = load_oracle(meta["source"])
    raw = _raw(ds, item)
    res = rollout(oracle, meta["video_frame_indices"], raw)
    assert res.frames.shape == (schema.CLIP_FRAMES, 64, 64, 3) and res.states.shape[0] == schema.CLIP_FRAMES
    np.testing.assert_array_equal(res.frames, oracle.render_clip(meta["video_frame_indices"], raw))
    assert goal_reached(res.outcome, res.outcome) and label_agreement(res.outcome, res.outcome) == 1.0
    # the outcome names every object of the clip's layout, with held and lifted at least
    kinds = [o.kind for o in oracle.scene.objects(int(res.states[-1][0]))]
    assert [k for k, _ in res.outcome] == kinds
    assert all({"held", "lifted"} <= {k for k, _ in labels} for _, labels in res.outcome)
    assert isinstance(describe(res.outcome), str) and describe(res.outcome)


def test_letting_go_changes_the_outcome_of_a_held_object(synth):
    ds = ClipDataset(synth, "train")
    for i in range(len(ds)):
        item = ds[i]
        oracle = load_oracle(item["meta"]["source"])
        idx = item["meta"]["video_frame_indices"]
        state = oracle.state_at(idx[-1])
        out = state_outcome(oracle.scene, state, oracle.state_at(idx[0]))
        if any(dict(labels)["held"] >= 0 for _, labels in out):
            break
    else:
        raise AssertionError("no clip of the fixture ends with an object in hand")
    raw = _raw(ds, item)
    goal = rollout(oracle, idx, raw, render=False).outcome
    released = dict(raw)
    released["hand_force"] = np.full_like(raw["hand_force"], schema.TACTILE_CLIP[0])  # no pressure at all
    res = rollout(oracle, idx, released, render=False)
    assert res.frames is None
    assert not goal_reached(res.outcome, goal)
    assert 0.0 <= label_agreement(res.outcome, goal) < 1.0


def test_action_vectors_round_trip(synth):
    item = ClipDataset(synth, "test")[0]
    acts = {n: v[None] for n, v in item["actions"].items()}
    vec = actions_to_vector(acts)
    assert vec.shape == (1, schema.CLIP_FRAMES, schema.ACTION_DIM)
    back = vector_to_actions(vec)
    for n in acts:
        np.testing.assert_array_equal(back[n].numpy(), acts[n])
