"""Editing the action trajectories of one clip: channel groups, range operations, recipes, history.

Everything here works on *normalised* clip values ``{name: float32 (T, *shape)}`` (what
``ClipDataset`` returns and the pipeline consumes), so an edit is exactly what the model sees.

A *channel group* is a named set of flat per-step feature indices of one modality: one EMG channel,
one joint coordinate, or a whole tactile map (``hand_force``: "left" / "right"). Its *curve* is the
mean over those features per time step; operations act on every feature of the group.

Every operation is a JSON-able dict (an *edit recipe* step) so the edits made by hand in the studio can
be replayed on other clips (batch export)::

    {"op": "scale", "modality": "emg", "channels": ["L1", "L2"], "start": 4, "end": 11, "amount": 2.0}
    {"op": "set_point", "modality": "emg", "channels": ["R3"], "step": 6, "value": 0.4}
    {"op": "copy", "modality": "hand_force", "source": {...}}     # array given inline (list) or by clip
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from mmsim_core import schema
from mmsim_core.errors import ActionInputError

OPS = ("scale", "offset", "smooth", "zero", "shift", "set_point", "set_curve", "copy")
RANGE_OPS = ("scale", "offset", "smooth", "zero", "shift")
HISTORY_LIMIT = 64
_SIDE = {"left": "L", "right": "R"}


# ----------------------------------------------------------------------------------------------
# Channel groups
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def channel_groups(modality: str) -> dict[str, tuple[int, ...]]:
    """``{group name: flat feature indices}`` of one modality, in schema order."""
    spec = schema.MODALITIES[schema.check_modality_names([modality])[0]]
    idx = np.arange(spec.size).reshape(spec.shape)
    groups: dict[str, tuple[int, ...]] = {}
    if modality == "emg":  # (2, 8)
        for s, side in enumerate(schema.SIDES):
            for c in range(spec.shape[1]):
                groups[f"{_SIDE[side]}{c + 1}"] = (int(idx[s, c]),)
    elif modality == "hand_force":  # (2, 32, 32): a whole map per hand
        for s, side in enumerate(schema.SIDES):
            groups[side] = tuple(int(i) for i in idx[s].ravel())
    elif modality == "hand_pose":  # (2, 24, 3): chain points of each hand
        names = [f"{finger} {j}" for finger, chain in schema.HAND_CHAINS.items() for j in range(len(chain))]
        for s, side in enumerate(schema.SIDES):
            for p, pname in enumerate(names):
                for a, axis in enumerate("xyz"):
                    groups[f"{_SIDE[side]} {pname} {axis}"] = (int(idx[s, p, a]),)
    elif modality == "body_pose":  # (28, 3): chain points
        names = [f"{chain} {schema.XSENS_BODY_SEGMENTS[i]}" for chain, seg in schema.BODY_CHAINS.items() for i in seg]
        for p, pname in enumerate(names):
            for a, axis in enumerate("xyz"):
                groups[f"{pname} {axis}"] = (int(idx[p, a]),)
    return groups


def default_channels(modality: str) -> list[str]:
    """A readable default selection for the curve editor."""
    if modality == "emg":
        return list(channel_groups("emg"))
    if modality == "hand_force":
        return ["left", "right"]
    if modality == "hand_pose":  # fingertip heights of the index finger and thumb
        return ["L index 4 z", "R index 4 z", "L thumb 3 z", "R thumb 3 z"]
    return ["left_arm Left Hand z", "right_arm Right Hand z", "spine Head z", "spine Head x"]


# ----------------------------------------------------------------------------------------------
# Controls: the quantities people think in, mapped onto the raw features
# ----------------------------------------------------------------------------------------------
# Tactile glove layout: the finger strips fill the upper rows of the 32x32 map, the palm the lower ones.
FORCE_REGIONS = {"total": (0, 32), "fingers": (0, 16), "palm": (16, 32)}
# The two keypoints whose distance is the grip aperture (thumb tip, index tip) within one hand's 24 points.
_THUMB_TIP, _INDEX_TIP = schema.HAND_CHAINS["thumb"][-1], schema.HAND_CHAINS["index"][-1]


@dataclass(frozen=True)
class Control:
    """A derived channel: a measure per step computed from some features, and how a new measure value is
    written back onto those features. ``kind``: "region" (sum of taxels; edits scale the region),
    "extension" (mean distance of a finger's joints from the Carpus; edits stretch or curl the finger
    towards the Carpus), "aperture" (thumb tip - index tip distance; edits open or close the pinch), or
    "alias" (a friendlier name for single features)."""

    name: str
    kind: str
    side: int = 0
    points: tuple[int, ...] = ()
    rows: tuple[int, int] = (0, 32)
    features: tuple[int, ...] = ()


@functools.lru_cache(maxsize=None)
def controls(modality: str) -> dict[str, Control]:
    """``{control name: Control}`` of one modality (besides the raw :func:`channel_groups`)."""
    out: dict[str, Control] = {}
    if modality == "hand_force":
        for s, side in enumerate(schema.SIDES):
            for region, rows in FORCE_REGIONS.items():
                out[f"{side} {region}"] = Control(f"{side} {region}", "region", side=s, rows=rows)
    elif modality == "emg":
        for s, side in enumerate(schema.SIDES):
            out[f"{_SIDE[side]} envelope"] = Control(f"{_SIDE[side]} envelope", "alias",
                                                     features=tuple(s * 8 + c for c in range(8)))
    elif modality == "hand_pose":
        for s, side in enumerate(schema.SIDES):
            for finger, chain in schema.HAND_CHAINS.items():
                name = f"{_SIDE[side]} {finger} extension"
                out[name] = Control(name, "extension", side=s, points=tuple(chain[1:]))
            name = f"{_SIDE[side]} grip aperture"
            out[name] = Control(name, "aperture", side=s, points=(_THUMB_TIP, _INDEX_TIP))
    elif modality == "body_pose":
        groups = channel_groups("body_pose")
        for label, point in (("L hand", "left_arm Left Hand"), ("R hand", "right_arm Right Hand"),
                             ("head", "spine Head")):
            for what, axis in (("height", "z"), ("x", "x"), ("y", "y")):
                out[f"{label} {what}"] = Control(f"{label} {what}", "alias", features=groups[f"{point} {axis}"])
    return out


def default_controls(modality: str) -> list[str]:
    """The controls the editor opens with."""
    return {"emg": ["L envelope", "R envelope", "L1", "R1"],
            "hand_force": ["left total", "right total"],
            "hand_pose": ["L grip aperture", "R grip aperture", "L index extension", "R index extension"],
            "body_pose": ["L hand height", "R hand height", "head x", "head y"]}[modality]


def _hand_points(arr: np.ndarray, side: int) -> np.ndarray:
    return arr[:, side]  # (T, 24, 3) view


def control_measure(actions: Mapping[str, np.ndarray], modality: str, name: str) -> np.ndarray:
    """``(T,)`` measure of one control."""
    c = controls(modality)[name]
    arr = actions[modality]
    if c.kind == "region":
        a, b = c.rows
        return arr[:, c.side, a:b].reshape(arr.shape[0], -1).sum(axis=1)
    if c.kind == "alias":
        return arr.reshape(arr.shape[0], -1)[:, list(c.features)].mean(axis=1)
    pts = _hand_points(arr, c.side)
    if c.kind == "extension":
        return np.linalg.norm(pts[:, list(c.points)] - pts[:, :1], axis=-1).mean(axis=1)
    return np.linalg.norm(pts[:, c.points[0]] - pts[:, c.points[1]], axis=-1)  # aperture


def _realise(arr: np.ndarray, modality: str, c: Control, old: np.ndarray, new: np.ndarray, rows) -> None:
    """Write new measures ``new`` (T,) at the steps ``rows`` onto ``arr`` (edited in place).

    Pose edits scale offsets about a point, which commutes with the per-axis min-max normalisation, so
    they act the same on normalised values as on centimetres."""
    for t in rows:
        o, n = float(old[t]), float(new[t])
        if c.kind == "region":
            a, b = c.rows
            block = arr[t, c.side, a:b]
            if o > 1e-6 and n >= 0:
                block *= n / o
            else:  # nothing pressed yet: spread the requested pressure evenly
                block += (n - o) / block.size
        elif c.kind == "alias":
            flat = arr.reshape(arr.shape[0], -1)
            flat[t, list(c.features)] += n - o
        elif o > 1e-6:
            k = max(n, 0.0) / o
            pts = arr[t, c.side]  # (24, 3) view
            if c.kind == "extension":
                pts[list(c.points)] = pts[0] + k * (pts[list(c.points)] - pts[0])
            else:  # aperture: thumb and index move symmetrically about their tips' midpoint, joints in proportion
                mid = 0.5 * (pts[_THUMB_TIP] + pts[_INDEX_TIP])
                for chain in (schema.HAND_CHAINS["thumb"], schema.HAND_CHAINS["index"]):
                    tip = pts[chain[-1]].copy()
                    move = (mid + k * (tip - mid)) - tip
                    for j, p in enumerate(chain[1:], start=1):
                        pts[p] += move * j / (len(chain) - 1)


def resolve_channels(modality: str, channels: Sequence[str] | str | None) -> list[str]:
    groups = {**channel_groups(modality), **controls(modality)}
    if channels is None or (isinstance(channels, str) and channels in ("", "all")):
        return list(channel_groups(modality))  # every raw channel
    if isinstance(channels, str):
        channels = [c.strip() for c in channels.split(",") if c.strip()]
    channels = list(channels)
    if not channels:
        raise ActionInputError(f"select at least one {modality} channel")
    bad = [c for c in channels if c not in groups]
    if bad:
        sample = list(groups)[:6]
        raise ActionInputError(f"unknown {modality} channel(s) {bad}; channels look like {sample}")
    return channels


def curves(actions: Mapping[str, np.ndarray], modality: str, channels: Sequence[str] | None = None) -> dict:
    """``{channel: (T,) float}``: per-step mean over each group's features."""
    arr = actions[modality]
    flat = arr.reshape(arr.shape[0], -1)  # (T, D)
    groups, ctrl = channel_groups(modality), controls(modality)
    return {c: (control_measure(actions, modality, c) if c in ctrl else flat[:, list(groups[c])].mean(axis=1))
            for c in resolve_channels(modality, channels)}


# ----------------------------------------------------------------------------------------------
# Operations
# ----------------------------------------------------------------------------------------------
def _range(T: int, start, end) -> slice:
    a = 0 if start is None else int(start)
    b = T - 1 if end is None else int(end)
    if not (0 <= a < T and 0 <= b < T):
        raise ActionInputError(f"time range [{a}, {b}] outside the clip's steps 0..{T - 1}")
    if a > b:
        a, b = b, a
    return slice(a, b + 1)


def _smooth(x: np.ndarray, width: float) -> np.ndarray:
    """Gaussian smoothing along time (axis 0), edges padded by reflection. ``width`` = sigma in steps."""
    sigma = max(float(width), 1e-3)
    r = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(x, [(r, r)] + [(0, 0)] * (x.ndim - 1), mode="reflect" if len(x) > r else "edge")
    return np.stack([np.tensordot(k, pad[i:i + 2 * r + 1], axes=(0, 0)) for i in range(len(x))])


def _clip_to_valid(modality: str, arr: np.ndarray) -> np.ndarray:
    # Tactile values are a fixed clip of the ADC range: outside [0, 1] they mean nothing.
    if schema.MODALITIES[modality].normalization == "fixed_clip":
        return np.clip(arr, 0.0, 1.0)
    return arr


def apply_op(actions: Mapping[str, np.ndarray], op: Mapping) -> dict[str, np.ndarray]:
    """Return new actions with one recipe step applied (inputs untouched). Raises ``ActionInputError``."""
    if not isinstance(op, Mapping):
        raise ActionInputError(f"an edit must be a dict, got {type(op).__name__}")
    kind = op.get("op")
    if kind not in OPS:
        raise ActionInputError(f"edit op must be one of {list(OPS)}, got {kind!r}")
    modality = op.get("modality")
    if modality not in schema.MODALITIES:
        raise ActionInputError(f"edit modality must be one of {list(schema.MODALITY_NAMES)}, got {modality!r}")
    out = {k: v for k, v in actions.items()}
    spec = schema.MODALITIES[modality]

    if kind == "copy":
        src = op.get("source")
        if src is None:
            raise ActionInputError("copy needs a 'source' array")
        src = np.asarray(src, dtype=np.float32)
        T = next(iter(actions.values())).shape[0] if actions else src.shape[0]
        if src.shape != (T, *spec.shape):
            raise ActionInputError(f"copied {modality} must have shape {(T, *spec.shape)}, got {src.shape}")
        out[modality] = src.copy()
        return out

    if modality not in actions:
        raise ActionInputError(f"this clip has no {modality} to edit (copy it from another clip first)")
    arr = np.array(actions[modality], dtype=np.float32, copy=True)
    T = arr.shape[0]
    flat = arr.reshape(T, -1)  # (T, D) view into arr
    groups = channel_groups(modality)
    chans = resolve_channels(modality, op.get("channels"))
    ctrl = controls(modality)
    if any(c in ctrl for c in chans):
        if not all(c in ctrl for c in chans):  # a mix: the raw channels first, then each control
            raw = [c for c in chans if c not in ctrl]
            out = apply_op(actions, {**op, "channels": raw})
            return apply_op(out, {**op, "channels": [c for c in chans if c in ctrl]})
        for c in chans:
            _apply_control(arr, modality, ctrl[c], kind, op)
        if not np.isfinite(arr).all():
            raise ActionInputError(f"the edit made {modality} non-finite")
        out[modality] = _clip_to_valid(modality, arr)
        return out
    cols = np.array(sorted({i for c in chans for i in groups[c]}), dtype=np.int64)

    if kind == "set_point":
        t = int(op.get("step", -1))
        if not 0 <= t < T:
            raise ActionInputError(f"step {t} outside the clip's steps 0..{T - 1}")
        value = float(op["value"])
        for c in chans:
            g = list(groups[c])
            cur = float(flat[t, g].mean())
            # A pressure map keeps its shape when dragged (scaled); single features just move.
            if len(g) > 1 and cur > 1e-3 and value >= 0:
                flat[t, g] *= value / cur
            else:
                flat[t, g] += value - cur
    elif kind == "set_curve":
        values = np.asarray(op.get("values"), dtype=np.float32)
        if values.shape != (len(chans), T):
            raise ActionInputError(f"set_curve values must have shape ({len(chans)}, {T}), got {values.shape}")
        for c, v in zip(chans, values):
            g = list(groups[c])
            flat[:, g] += (v - flat[:, g].mean(axis=1))[:, None]
    else:
        sl = _range(T, op.get("start"), op.get("end"))
        block = flat[sl][:, cols]  # (t, K)
        amount = op.get("amount")
        if kind == "scale":
            amount = 1.0 if amount is None else float(amount)
            block = block * amount
        elif kind == "offset":
            block = block + (0.0 if amount is None else float(amount))
        elif kind == "zero":
            block = np.zeros_like(block)
        elif kind == "smooth":
            # Smooth over the whole clip so the selected range blends into its neighbours.
            block = _smooth(flat[:, cols], 1.0 if amount is None else float(amount))[sl]
        elif kind == "shift":
            k = 0 if amount is None else int(round(float(amount)))
            src = np.arange(sl.start, sl.stop) - k  # positive k delays the signal
            block = flat[np.clip(src, 0, T - 1)][:, cols]
        flat[sl.start:sl.stop, cols] = block
    if not np.isfinite(arr).all():
        raise ActionInputError(f"the edit made {modality} non-finite")
    out[modality] = _clip_to_valid(modality, arr)
    return out


def _apply_control(arr: np.ndarray, modality: str, c: Control, kind: str, op: Mapping) -> None:
    """One operation on a control: the operation acts on the control's measure curve, and the new
    measure is written back onto the features (in place)."""
    T = arr.shape[0]
    old = control_measure({modality: arr}, modality, c.name)  # (T,)
    new = old.copy()
    if kind == "set_point":
        t = int(op.get("step", -1))
        if not 0 <= t < T:
            raise ActionInputError(f"step {t} outside the clip's steps 0..{T - 1}")
        new[t] = float(op["value"])
        rows = [t]
    elif kind == "set_curve":
        values = np.asarray(op.get("values"), dtype=np.float32)
        if values.shape[-1] != T:
            raise ActionInputError(f"set_curve values must have {T} steps, got {values.shape}")
        new = values.reshape(-1, T)[0].astype(np.float64)
        rows = range(T)
    else:
        sl = _range(T, op.get("start"), op.get("end"))
        amount = op.get("amount")
        if kind == "scale":
            new[sl] = old[sl] * (1.0 if amount is None else float(amount))
        elif kind == "offset":
            new[sl] = old[sl] + (0.0 if amount is None else float(amount))
        elif kind == "zero":
            new[sl] = 0.0
        elif kind == "smooth":
            new[sl] = _smooth(old, 1.0 if amount is None else float(amount))[sl]
        elif kind == "shift":
            k = 0 if amount is None else int(round(float(amount)))
            new[sl] = old[np.clip(np.arange(sl.start, sl.stop) - k, 0, T - 1)]
        rows = range(sl.start, sl.stop)
    _realise(arr, modality, c, old, new, rows)


def apply_recipe(actions: Mapping[str, np.ndarray], recipe: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Apply recipe steps in order. Steps on modalities a clip lacks raise ``ActionInputError``."""
    out = dict(actions)
    for i, op in enumerate(recipe):
        try:
            out = apply_op(out, op)
        except ActionInputError as e:
            raise ActionInputError(f"edit recipe step {i + 1} ({op.get('op') if isinstance(op, Mapping) else op}): {e}") from None
    return out


def parse_recipe(text_or_list) -> list[dict]:
    """A recipe from JSON text (a list of steps, or ``{"edits": [...]}``) or a list."""
    import json

    if isinstance(text_or_list, str):
        if not text_or_list.strip():
            return []
        try:
            data = json.loads(text_or_list)
        except json.JSONDecodeError as e:
            raise ActionInputError(f"edit recipe is not valid JSON: {e}") from None
    else:
        data = text_or_list
    if isinstance(data, Mapping):
        data = data.get("edits", None)
    if not isinstance(data, list) or not all(isinstance(s, Mapping) for s in data):
        raise ActionInputError('edit recipe must be a JSON list of edit steps (or {"edits": [...]})')
    for i, s in enumerate(data):
        if s.get("op") not in OPS:
            raise ActionInputError(f"edit recipe step {i + 1}: op must be one of {list(OPS)}, got {s.get('op')!r}")
    return [dict(s) for s in data]


# ----------------------------------------------------------------------------------------------
# Edit history of one clip
# ----------------------------------------------------------------------------------------------
@dataclass
class EditHistory:
    """Original actions, the current ones, undo/redo stacks and the recipe that produced them."""

    original: dict[str, np.ndarray]
    current: dict[str, np.ndarray] = field(default=None)
    recipe: list[dict] = field(default_factory=list)
    _undo: list[tuple[dict, list]] = field(default_factory=list, repr=False)
    _redo: list[tuple[dict, list]] = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.original = {k: np.asarray(v, dtype=np.float32).copy() for k, v in self.original.items()}
        if self.current is None:
            self.current = {k: v.copy() for k, v in self.original.items()}

    def apply(self, op: Mapping) -> dict[str, np.ndarray]:
        return self.apply_many([op])

    def apply_many(self, ops: Sequence[Mapping]) -> dict[str, np.ndarray]:
        """Apply several recipe steps as ONE edit: a single Undo takes all of them back (a proposal sets
        every modality at once). Nothing changes when any step fails."""
        new = self.current
        for op in ops:
            new = apply_op(new, op)  # raises before touching the history
        self._undo.append((self.current, list(self.recipe)))
        del self._undo[:-HISTORY_LIMIT]
        self._redo.clear()
        self.current = new
        for op in ops:
            self.recipe.append({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in op.items()})
        return new

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append((self.current, list(self.recipe)))
        self.current, self.recipe = self._undo.pop()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append((self.current, list(self.recipe)))
        self.current, self.recipe = self._redo.pop()
        return True

    def reset(self) -> None:
        if self.recipe or self._redo:
            self._undo.append((self.current, list(self.recipe)))
        self._redo.clear()
        self.current = {k: v.copy() for k, v in self.original.items()}
        self.recipe = []

    def is_edited(self) -> bool:
        return any(not np.array_equal(self.current.get(k), v) for k, v in self.original.items()) or \
            set(self.current) != set(self.original)

    def copy(self) -> "EditHistory":
        return copy.deepcopy(self)


__all__ = ["OPS", "RANGE_OPS", "channel_groups", "controls", "default_controls", "control_measure", "default_channels", "resolve_channels", "curves", "apply_op",
           "apply_recipe", "parse_recipe", "EditHistory"]
