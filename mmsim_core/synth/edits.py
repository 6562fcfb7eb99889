"""Edit families: counterfactual changes to the FUTURE steps of one action modality.

Each family takes one clip's raw actions (ActionSense units, the values ``mmsim preprocess`` computes
before min-max scaling and the oracle renders: ``hand_pose`` (T, 2, 24, 3) cm relative to each hand's
Carpus, ``body_pose`` (T, 28, 3) cm minus the centre of mass, ``emg`` (T, 2, 8) Myo envelope, ``hand_force``
(T, 2, 32, 32) tactile ADC) and changes one modality from step ``start`` on:

=================  ===========  ==================================================================
family             modality     what changes (``strength`` 1 = the nominal edit)
=================  ===========  ==================================================================
release_grip       hand_force   one hand lets go (by default the one pressing hardest after ``start``):
                                pressure above the untouched baseline removed
squeeze            hand_force   both hands press harder: pressure x (1 + strength) + a whole-glove press
emg_up             emg          envelope x (1 + 2 strength) (x3), clipped to the Myo range
emg_rest           emg          envelope to the resting level (no muscle effort)
fingers_open       hand_pose    fingers straightened (flat open hand), the hand's orientation kept
fingers_closed     hand_pose    fingers curled into a power grip (fist), orientation kept
hand_pose_swap     hand_pose    the hand pose of another clip (``other=``)
hand_shift         body_pose    forearm + hand points moved 10 cm outward along the shoulder line
body_timing        body_pose    body motion delayed (strength > 0) or advanced (< 0) by 3 strength steps
=================  ===========  ==================================================================

Steps before ``start`` (the context, whose frames stay true) are never touched; the edit ramps in over
``RAMP_STEPS`` steps so it does not teleport a hand between two frames, and (with ``end``) ramps out
before ``end``. Values leaving a modality's valid range (``VALID_RANGE``) are clipped, with the reason
logged. Everything is deterministic; :func:`random_edit_kwargs` draws the randomised arguments used for
counterfactual recordings.

    from mmsim_core.synth.edits import apply_edit
    edited = apply_edit("fingers_open", raw, start=4, side="right")
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from mmsim_core import schema
from mmsim_core.errors import ActionInputError
from mmsim_core.synth import kinematics as kin

logger = logging.getLogger("mmsim.synth.edits")

FAMILY_MODALITY: dict[str, str] = {
    "release_grip": "hand_force",
    "squeeze": "hand_force",
    "emg_up": "emg",
    "emg_rest": "emg",
    "fingers_open": "hand_pose",
    "fingers_closed": "hand_pose",
    "hand_pose_swap": "hand_pose",
    "hand_shift": "body_pose",
    "body_timing": "body_pose",
}
EDIT_FAMILIES: tuple[str, ...] = tuple(FAMILY_MODALITY)

FAMILY_DESCRIPTIONS: dict[str, str] = {
    "release_grip": "one hand's tactile pressure to the untouched baseline",
    "squeeze": "both hands pressed harder",
    "emg_up": "EMG envelope x3",
    "emg_rest": "EMG envelope to the resting level",
    "fingers_open": "fingers straightened, an open hand",
    "fingers_closed": "fingers curled, a power grip",
    "hand_pose_swap": "hand pose of another clip",
    "hand_shift": "forearm and hand moved 10 cm outward",
    "body_timing": "body motion delayed by 3 steps",
}

RAMP_STEPS = 2
"""Steps over which an edit fades in (and out before ``end``)."""

TACTILE_UNTOUCHED = 522.0
"""ADC reading of an untouched taxel: the middle of the synthetic gloves' baseline (515-528), below the
530 floor of the tactile normalisation, so it reads as no pressure."""
SQUEEZE_PRESS = 25.0
"""ADC added over the whole glove by ``squeeze`` at strength 1: a firm press even where the hand was not
touching anything (pressure alone, scaled, would leave an open hand at zero)."""
EMG_REST = 5.0
"""Resting EMG envelope (raw units) of the synthetic world's subjects."""
EMG_UP_GAIN = 2.0
"""``emg_up`` multiplies the envelope by ``1 + EMG_UP_GAIN * strength`` (x3 at strength 1)."""
HAND_SHIFT_CM = 10.0
BODY_TIMING_STEPS = 3.0

VALID_RANGE: dict[str, tuple[float, float]] = {
    "emg": (0.0, float(schema.EMG_RANGE[1])),  # an envelope of |emg|, Myo samples are int8
    "hand_force": (0.0, schema.TACTILE_CLIP[1]),  # above 600 the normalisation saturates anyway
}
"""Raw ranges edited values are clipped to. Poses have none (any finite position renders)."""

# Positions of the arm segments inside the 28-point body_pose chain list (every occurrence).
_BODY_POS = {name: [i for i, s in enumerate(schema.BODY_POSE_INDICES) if s == schema.XSENS_BODY_SEGMENTS.index(name)]
             for name in ("Left Upper Arm", "Right Upper Arm", "Left Forearm", "Right Forearm", "Left Hand",
                          "Right Hand")}  # fmt: skip

# Finger segments whose carpus-relative position does not depend on how far the hand is closed (the
# metacarpals and the knuckles): they fix the hand's orientation and size when the fingers are re-posed.
_RIGID = np.array([1] + [s for f in kin.FINGERS for s in f[:2]])
# hand_pose point k is Xsens finger segment HAND_POSE_INDICES[k] (the Carpus repeats at each chain start).
_SEG_TO_POSE = np.array(schema.HAND_POSE_INDICES)


def ramp(T: int, start: int, end: int | None = None, steps: int = RAMP_STEPS) -> np.ndarray:
    """Edit weight per step ``(T,)``: 0 before ``start``, rising to 1 over ``steps`` steps (the first
    edited step already moves), and falling back to 0 over the last ``steps`` steps before ``end``."""
    t = np.arange(T, dtype=np.float32)
    w = np.clip((t - start + 1) / steps, 0.0, 1.0) * (t >= start)
    if end is not None:
        w = w * np.clip((end - t) / steps, 0.0, 1.0) * (t < end)
    return w.astype(np.float32)


def _sides(side: str | None, default: tuple[int, ...] = (0, 1)) -> tuple[int, ...]:
    """Hand indices (0 left, 1 right) an edit applies to."""
    if side is None:
        return default
    if side not in schema.SIDES:
        raise ActionInputError(f"edit side must be one of {list(schema.SIDES)} or None (both hands), got {side!r}")
    return (schema.SIDES.index(side),)


def _clip(family: str, modality: str, values: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Edited values clipped to the valid range; values the edit left alone stay as recorded (a glove may
    read above the normalisation's ceiling: not this edit's business)."""
    lo, hi = VALID_RANGE[modality]
    out = np.where(values != original, np.clip(values, lo, hi), values)
    n = int(np.count_nonzero(out != values))
    if n:
        logger.info("%s: %d of %d %s values outside the valid range [%g, %g] clipped (the sensor cannot report "
                    "them)", family, n, values.size, modality, lo, hi)
    return out


# ----------------------------------------------------------------------------------------------
# hand_force
# ----------------------------------------------------------------------------------------------
def _release_grip(x, w, strength, sides, other):
    # Only pressure above the untouched baseline is removed: taxels already at rest stay as they are.
    out = x.copy()  # (T, 2, 32, 32)
    for s in sides:
        out[:, s] = x[:, s] - (strength * w)[:, None, None] * np.clip(x[:, s] - TACTILE_UNTOUCHED, 0.0, None)
    return out


def _squeeze(x, w, strength, sides, other):
    lo = schema.TACTILE_CLIP[0]
    out = x.copy()
    for s in sides:
        pressure = np.clip(x[:, s] - lo, 0.0, None)
        squeezed = np.maximum(x[:, s], lo) + strength * (pressure + SQUEEZE_PRESS)
        out[:, s] = x[:, s] + w[:, None, None] * (squeezed - x[:, s])
    return out


# ----------------------------------------------------------------------------------------------
# emg
# ----------------------------------------------------------------------------------------------
def _emg_up(x, w, strength, sides, other):
    out = x.copy()  # (T, 2, 8)
    for s in sides:
        out[:, s] = x[:, s] * (1.0 + EMG_UP_GAIN * strength * w)[:, None]
    return out


def _emg_rest(x, w, strength, sides, other):
    out = x.copy()
    for s in sides:
        out[:, s] = x[:, s] + (strength * w)[:, None] * (EMG_REST - x[:, s])
    return out


# ----------------------------------------------------------------------------------------------
# hand_pose
# ----------------------------------------------------------------------------------------------
def _fit_hand_frame(seg: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Per step, the scaled rotation ``(T, 3, 3)`` best mapping ``template``'s rigid finger segments
    (T, 20, 3) onto ``seg``'s (orthogonal Procrustes, no reflection; both are carpus-relative)."""
    a, b = template[:, _RIGID], seg[:, _RIGID]  # (T, 9, 3)
    u, _, vt = np.linalg.svd(np.einsum("tki,tkj->tij", b, a))  # cross-covariance seg x template
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= d[:, None]
    rot = u @ vt  # (T, 3, 3)
    scale = np.linalg.norm(b, axis=(1, 2)) / np.maximum(np.linalg.norm(a, axis=(1, 2)), 1e-6)
    return scale[:, None, None] * rot


def _pose_with_grip(x: np.ndarray, grip: float, s: int) -> np.ndarray:
    """Hand ``s`` of raw ``hand_pose`` (T, 2, 24, 3) re-posed with finger closure ``grip`` (0 open .. 1
    fist), keeping each step's hand orientation and size: (T, 24, 3)."""
    T = len(x)
    seg = kin.hand_segments(x[:, s]).astype(np.float64)  # (T, 20, 3)
    zeros = np.zeros(T)
    template = kin.hand_fk(np.full(T, 0.5), zeros, zeros, zeros, s)  # rigid segments: any closure
    frame = _fit_hand_frame(seg, template)
    target = np.einsum("tij,tkj->tki", frame, kin.hand_fk(np.full(T, grip), zeros, zeros, zeros, s))
    return target[:, _SEG_TO_POSE]


def _fingers(grip):
    def edit(x, w, strength, sides, other):
        out = x.copy()  # (T, 2, 24, 3)
        for s in sides:
            out[:, s] = x[:, s] + (strength * w)[:, None, None] * (_pose_with_grip(x, grip, s) - x[:, s])
        return out
    return edit


def _hand_pose_swap(x, w, strength, sides, other):
    if other is None:
        raise ActionInputError("hand_pose_swap needs other= (the raw actions, or the hand_pose, of another clip)")
    y = np.asarray(other["hand_pose"] if isinstance(other, Mapping) else other, dtype=np.float32)
    if y.shape[1:] != x.shape[1:] or len(y) < len(x):
        raise ActionInputError(f"hand_pose_swap: other hand_pose must have shape ({len(x)}, "
                               f"{', '.join(map(str, x.shape[1:]))}) or more steps, got {y.shape}")
    out = x.copy()
    for s in sides:
        out[:, s] = x[:, s] + (strength * w)[:, None, None] * (y[:len(x), s] - x[:, s])
    return out


# ----------------------------------------------------------------------------------------------
# body_pose
# ----------------------------------------------------------------------------------------------
def _hand_shift(x, w, strength, sides, other):
    right = x[:, _BODY_POS["Right Upper Arm"][0]] - x[:, _BODY_POS["Left Upper Arm"][0]]  # shoulder line (T, 3)
    right[:, 2] = 0.0  # horizontal: the hand moves along the counter, not up
    right /= np.maximum(np.linalg.norm(right, axis=1, keepdims=True), 1e-6)
    out = x.copy()  # (T, 28, 3)
    for s in sides:
        outward = right if s == 1 else -right
        offset = HAND_SHIFT_CM * strength * w[:, None] * outward  # (T, 3)
        for name in (f"{schema.SIDES[s].title()} Forearm", f"{schema.SIDES[s].title()} Hand"):
            for p in _BODY_POS[name]:
                out[:, p] += offset
    return out


def _body_timing(x, w, strength, sides, other):
    k = int(round(BODY_TIMING_STEPS * strength))
    T = len(x)
    src = np.clip(np.arange(T) - k, 0, T - 1)  # delayed: step t shows step t - k (advanced: t + |k|)
    return x + w[:, None, None] * (x[src] - x)


_EDITS = {
    "release_grip": _release_grip, "squeeze": _squeeze, "emg_up": _emg_up, "emg_rest": _emg_rest,
    "fingers_open": _fingers(0.0), "fingers_closed": _fingers(1.0), "hand_pose_swap": _hand_pose_swap,
    "hand_shift": _hand_shift, "body_timing": _body_timing,
}
_DEFAULT_SIDES = {"hand_shift": (1,)}
"""One-hand families act on the right hand unless told otherwise (``release_grip``: the gripping hand, see
:func:`gripping_hand`); the others on both."""


def gripping_hand(hand_force: np.ndarray, start: int = 0) -> int:
    """The hand (0 left, 1 right) whose tactile pressure above the untouched baseline, summed over steps
    ``start`` on, is the larger: the one a "let go" edit is about. Ties (no contact at all) go right."""
    x = np.asarray(hand_force, dtype=np.float32)[start:]  # (T', 2, 32, 32)
    pressure = np.clip(x - TACTILE_UNTOUCHED, 0.0, None).sum(axis=(0, 2, 3))  # (2,)
    return 0 if pressure[0] > pressure[1] else 1


def apply_edit(family: str, raw: Mapping[str, np.ndarray], start: int, *, strength: float = 1.0,
               side: str | None = None, other=None, end: int | None = None) -> dict:
    """``raw`` with ``family`` applied to steps ``start`` (.. ``end``) of its modality; a new dict, the
    other modalities shared, the edited one a new float32 array.

    ``side``: ``"left"`` / ``"right"`` for one hand, None for the family's default (both hands; the right
    one for ``hand_shift``; for ``release_grip`` the :func:`gripping_hand` of the edited steps);
    ``body_timing`` acts on the whole body and takes none.
    ``other``: for ``hand_pose_swap``, another clip's raw actions (or its ``hand_pose``).
    """
    if family not in _EDITS:
        raise ActionInputError(f"edit family must be one of {list(EDIT_FAMILIES)}, got {family!r}")
    modality = FAMILY_MODALITY[family]
    if modality not in raw:
        raise ActionInputError(f"{family} edits {modality}, which these actions do not have "
                               f"(they have {sorted(raw)})")
    x = np.asarray(raw[modality], dtype=np.float32)
    spec = schema.MODALITIES[modality]
    if x.ndim != len(spec.shape) + 1 or x.shape[1:] != spec.shape:
        raise ActionInputError(f"{family}: {modality} must have shape (T, {', '.join(map(str, spec.shape))}), "
                               f"got {x.shape}")
    T = len(x)
    if not 0 <= int(start) <= T:
        raise ActionInputError(f"{family}: start must be a step in [0, {T}], got {start}")
    if end is not None and not int(start) < int(end) <= T:
        raise ActionInputError(f"{family}: end must be in ({start}, {T}], got {end}")
    if not np.isfinite(strength):
        raise ActionInputError(f"{family}: strength must be a finite number, got {strength}")
    if family == "body_timing":
        if side is not None:
            raise ActionInputError(f"body_timing moves the whole body: side must be None, got {side!r}")
        sides = ()
    elif family == "release_grip" and side is None:
        sides = (gripping_hand(x, int(start)),)
    else:
        sides = _sides(side, _DEFAULT_SIDES.get(family, (0, 1)))
    w = ramp(T, int(start), None if end is None else int(end))
    out = _EDITS[family](x, w, float(strength), sides, other).astype(np.float32)
    if modality in VALID_RANGE:
        out = _clip(family, modality, out, x)
    out[:start] = x[:start]  # exact: the context is never touched, whatever the arithmetic did
    if end is not None:
        out[end:] = x[end:]
    return {**raw, modality: out}


_STRENGTH = {
    "release_grip": (0.7, 1.0), "squeeze": (0.5, 1.5), "emg_up": (0.5, 1.5), "emg_rest": (0.7, 1.0),
    "fingers_open": (0.6, 1.0), "fingers_closed": (0.6, 1.0), "hand_pose_swap": (0.7, 1.0),
    "hand_shift": (0.5, 1.5), "body_timing": (2 / 3, 4 / 3),
}
_SIGNED = ("hand_shift", "body_timing")  # inward / advanced as well as outward / delayed


def random_edit_kwargs(rng: np.random.Generator, family: str, T: int, h: int) -> dict:
    """Randomised ``start`` (>= ``h``, leaving at least ``RAMP_STEPS`` edited steps), ``strength`` and
    ``side`` for ``apply_edit(family, raw, **kwargs)`` (``hand_pose_swap`` also needs ``other``)."""
    if family not in _EDITS:
        raise ActionInputError(f"edit family must be one of {list(EDIT_FAMILIES)}, got {family!r}")
    if not 0 <= h < T:
        raise ActionInputError(f"need 0 <= h < T for an edit after the context, got h={h}, T={T}")
    start = int(rng.integers(h, max(h, T - RAMP_STEPS) + 1))
    lo, hi = _STRENGTH[family]
    strength = float(rng.uniform(lo, hi))
    if family in _SIGNED and rng.random() < 0.5:
        strength = -strength
    if family == "body_timing":
        side = None
    elif family == "release_grip":  # the gripping hand half of the time, else either hand
        side = None if rng.random() < 0.5 else str(rng.choice(schema.SIDES))
    elif family in _DEFAULT_SIDES:  # one-hand families: either hand
        side = str(rng.choice(schema.SIDES))
    else:  # both hands or one
        side = [None, *schema.SIDES][int(rng.integers(3))]
    return {"start": start, "strength": strength, "side": side}
