"""What a clip's actions *achieve* in the synthetic world: discrete task outcomes read from world states.

Downstream uses of the simulator (goal-conditioned policies, planning) need a verdict the video model cannot
give about itself: did the actions bring the world to the goal? The oracle re-runs the world from a clip's
first state under any action trajectory; this module reads the end state as a few labels per object, the
ones a person would name when saying what happened:

- ``held``   (every object): which hand holds it, -1 for none;
- ``lifted`` (every object): it is more than :data:`LIFT_CM` above where it rests;
- ``cuts``   (potato, cucumber): how many distinct cuts the blade has made;
- ``peeled`` (potato): more than half of the skin is off;
- ``clean``  (pan, plate): less than :data:`CLEAN_BELOW` of the dirt it had at the clip's first frame is
  left, so a scrub that halves the dirt counts wherever it starts;
- ``open``   (jar): the lid has come off; ``filled`` (glass): more than half full.

>>> oracle = load_oracle(meta["source"])
>>> result = rollout(oracle, meta["video_frame_indices"], raw_actions)      # frames and states
>>> goal = rollout(oracle, meta["video_frame_indices"], recorded_actions).outcome
>>> goal_reached(result.outcome, goal)                                       # True / False

A *goal* is the outcome of the recorded (expert) actions; a clip is *eventful* when that outcome differs from
the outcome of its first state (something was grasped, let go, lifted, cut, ... during the clip), the clips on
which reaching the goal is not the same as doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from mmsim_core import schema
from mmsim_core.synth import world
from mmsim_core.video import center_crop_resize

LIFT_CM = 2.0
"""Height above the resting height (cm) from which an object counts as lifted."""
CLEAN_BELOW = 0.5
"""An object is ``clean`` when less than this fraction of the dirt it had at the clip's first frame is left."""

Outcome = tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
"""Per object slot: ``(kind, ((label, value), ...))``: hashable, comparable, printable."""


def _bit_count(x: float) -> int:
    return bin(int(x)).count("1")


def state_outcome(scene: world.Scene, state: np.ndarray, start: np.ndarray | None = None) -> Outcome:
    """The discrete labels of a world state (``start``: the clip's first state, for ``clean``)."""
    state = np.asarray(state, dtype=np.float64)
    start = state if start is None else np.asarray(start, dtype=np.float64)
    segment = int(state[0])
    out = []
    for i, obj in enumerate(scene.objects(segment)):
        st, st0 = world.object_state(state, i), world.object_state(start, i)
        labels = [("held", int(st[world.HELD])), ("lifted", int(st[world.Z] - obj.spec.z_rest > LIFT_CM))]
        fields = obj.FIELDS
        if "cuts" in fields:
            labels.append(("cuts", _bit_count(obj.own(st, "cuts"))))
        if "peel" in fields:
            labels.append(("peeled", int(obj.own(st, "peel") > 0.5)))
        if "dirt" in fields:
            dirt0 = obj.own(st0, "dirt") if int(start[0]) == segment else obj.spec.progress0
            labels.append(("clean", int(obj.own(st, "dirt") < CLEAN_BELOW * max(dirt0, 1e-6))))
        if "lid" in fields:
            labels.append(("open", int(obj.own(st, "lid") >= world.LID_OPEN)))
        if "fill" in fields:
            labels.append(("filled", int(obj.own(st, "fill") > 0.5)))
        out.append((obj.kind, tuple(labels)))
    return tuple(out)


def goal_reached(outcome: Outcome, goal: Outcome) -> bool:
    """All of the goal's labels hold in ``outcome`` (same objects, same values)."""
    return outcome == goal


def label_agreement(outcome: Outcome, goal: Outcome) -> float:
    """Fraction of the goal's labels that ``outcome`` matches (1.0 when the goal is reached)."""
    want = [(i, k, v) for i, (_, labels) in enumerate(goal) for k, v in labels]
    if not want:
        return 1.0
    have = {(i, k): v for i, (_, labels) in enumerate(outcome) for k, v in labels}
    return float(np.mean([have.get((i, k)) == v for i, k, v in want]))


def describe(outcome: Outcome) -> str:
    """``"pan: held by right, lifted; sponge: clean"``-style text (labels at their resting value left out)."""
    hands = {0: "left", 1: "right"}
    parts = []
    for kind, labels in outcome:
        words = []
        for k, v in labels:
            if k == "held" and v >= 0:
                words.append(f"held by {hands.get(v, v)}")
            elif k == "cuts" and v:
                words.append(f"{v} cut{'s' * (v != 1)}")
            elif k not in ("held", "cuts") and v:
                words.append(k)
        parts.append(f"{kind}: {', '.join(words) if words else 'at rest'}")
    return "; ".join(parts)


@dataclass
class Rollout:
    """The world run under one action trajectory from a clip's first state."""

    frames: np.ndarray | None
    """uint8 ``(T, size, size, 3)`` as preprocessing produces them, or None when not rendered."""
    states: np.ndarray
    """``(T, len(world.STATE_FIELDS))`` the state at each frame."""
    outcome: Outcome
    """The labels of the last state."""
    start_outcome: Outcome
    """The labels of the first state."""

    @property
    def eventful(self) -> bool:
        return self.outcome != self.start_outcome


def rollout(oracle, frame_indices: Sequence[int], raw_actions: Mapping[str, np.ndarray], render: bool = True,
            size: int | None = schema.FRAME_SIZE, initial_state: np.ndarray | None = None) -> Rollout:
    """Run the world of ``oracle`` (an :class:`~mmsim_core.synth.oracle.OracleRecording`) from the recorded
    state at ``frame_indices[0]`` (or ``initial_state``) under ``raw_actions`` (raw clip values, one step per
    index; modalities left out keep their recorded values, as ``OracleRecording.render_clip``)."""
    idx = oracle._indices(frame_indices)
    acts = oracle.complete_actions(idx, raw_actions)
    state0 = oracle.states[idx[0]] if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    frames, states = world.simulate(oracle.scene, state0, acts, oracle.frame_times[idx], render_frames=render)
    if frames is not None and size is not None:
        frames = center_crop_resize(frames, size)
    return Rollout(frames=frames, states=states, outcome=state_outcome(oracle.scene, states[-1], states[0]),
                   start_outcome=state_outcome(oracle.scene, states[0], states[0]))
