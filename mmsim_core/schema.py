"""The one place that says what each action modality is.

Every module (reader, synthetic world, preprocessing, dataset, model, studio) takes names, shapes,
units, left/right order and normalisation from here. Conventions follow ActionSense: left before
right, Xsens MVN segment order, Myo EMG channel order, 32x32 tactile glove taxels.

Clip-level values (what ``ClipDataset`` returns and the pipeline consumes) are *normalised*:
``normalize(name, raw, stats)``. The synthetic world's oracle consumes *raw* clip values (after
alignment and the geometric normalisations, before scaling): ``denormalize`` maps back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

# ----------------------------------------------------------------------------------------------
# Clip geometry (paper §3: 12-frame sequences, 4 context + 8 predicted, 64x64)
# ----------------------------------------------------------------------------------------------
CONTEXT_FRAMES = 4
FUTURE_FRAMES = 8
CLIP_FRAMES = CONTEXT_FRAMES + FUTURE_FRAMES
FRAME_SIZE = 64
SIDES = ("left", "right")

# ----------------------------------------------------------------------------------------------
# Xsens MVN skeleton (xsens-segments/position_cm: 23 body segments, then 20 per hand L then R)
# ----------------------------------------------------------------------------------------------
XSENS_BODY_SEGMENTS = (
    "Pelvis", "L5", "L3", "T12", "T8", "Neck", "Head",
    "Right Shoulder", "Right Upper Arm", "Right Forearm", "Right Hand",
    "Left Shoulder", "Left Upper Arm", "Left Forearm", "Left Hand",
    "Right Upper Leg", "Right Lower Leg", "Right Foot", "Right Toe",
    "Left Upper Leg", "Left Lower Leg", "Left Foot", "Left Toe",
)
XSENS_FINGER_SEGMENTS = (
    "Carpus",
    "First Metacarpal", "First Proximal Phalange", "First Distal Phalange",
    "Second Metacarpal", "Second Proximal Phalange", "Second Middle Phalange", "Second Distal Phalange",
    "Third Metacarpal", "Third Proximal Phalange", "Third Middle Phalange", "Third Distal Phalange",
    "Fourth Metacarpal", "Fourth Proximal Phalange", "Fourth Middle Phalange", "Fourth Distal Phalange",
    "Fifth Metacarpal", "Fifth Proximal Phalange", "Fifth Middle Phalange", "Fifth Distal Phalange",
)
NUM_BODY_SEGMENTS = len(XSENS_BODY_SEGMENTS)  # 23
NUM_FINGER_SEGMENTS = len(XSENS_FINGER_SEGMENTS)  # 20 per hand
NUM_SEGMENTS_WITH_FINGERS = NUM_BODY_SEGMENTS + 2 * NUM_FINGER_SEGMENTS  # 63
LEFT_HAND_OFFSET = NUM_BODY_SEGMENTS  # 23
RIGHT_HAND_OFFSET = NUM_BODY_SEGMENTS + NUM_FINGER_SEGMENTS  # 43


def _seg(name: str) -> int:
    return XSENS_BODY_SEGMENTS.index(name)


# 28 chain indices into the 23 body segments (ActionSense skeleton chains).
BODY_CHAINS: dict[str, tuple[int, ...]] = {
    "left_leg": tuple(_seg(n) for n in ("Left Upper Leg", "Left Lower Leg", "Left Foot", "Left Toe")),
    "right_leg": tuple(_seg(n) for n in ("Right Upper Leg", "Right Lower Leg", "Right Foot", "Right Toe")),
    "spine": tuple(_seg(n) for n in ("Head", "Neck", "T8", "T12", "L3", "L5", "Pelvis")),
    "hip": tuple(_seg(n) for n in ("Left Upper Leg", "Pelvis", "Right Upper Leg")),
    "shoulders": tuple(_seg(n) for n in ("Left Upper Arm", "Left Shoulder", "Right Shoulder", "Right Upper Arm")),
    "left_arm": tuple(_seg(n) for n in ("Left Upper Arm", "Left Forearm", "Left Hand")),
    "right_arm": tuple(_seg(n) for n in ("Right Upper Arm", "Right Forearm", "Right Hand")),
}
BODY_POSE_INDICES: tuple[int, ...] = tuple(i for chain in BODY_CHAINS.values() for i in chain)
assert len(BODY_POSE_INDICES) == 28

# 5 chains per hand, each starting at the Carpus: thumb 4 + 4 fingers x 5 = 24 (indices within a hand).
HAND_CHAINS: dict[str, tuple[int, ...]] = {
    "thumb": (0, 1, 2, 3),
    "index": (0, 4, 5, 6, 7),
    "middle": (0, 8, 9, 10, 11),
    "ring": (0, 12, 13, 14, 15),
    "pinky": (0, 16, 17, 18, 19),
}
HAND_POSE_INDICES: tuple[int, ...] = tuple(i for chain in HAND_CHAINS.values() for i in chain)
assert len(HAND_POSE_INDICES) == 24

# Paper code: tactile ADC readings clipped to [530, 600] then scaled to [0, 1].
TACTILE_CLIP = (530.0, 600.0)
EMG_RANGE = (-128, 127)


# ----------------------------------------------------------------------------------------------
# Modality specs
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModalitySpec:
    """What one action modality is, per time step."""

    name: str
    shape: tuple[int, ...]
    unit: str
    description: str
    source: tuple[str, ...]
    """HDF5 ``device/stream`` paths in an ActionSense recording."""
    normalization: str
    """``"fixed_clip"``: clip to ``fixed_range`` then scale to [0, 1] (no statistics needed);
    ``"minmax"``: min-max scaling to [0, 1] with statistics from the training split."""
    fixed_range: tuple[float, float] | None = None
    stats_axes: tuple[int, ...] = field(default=())
    """Per-step axes that keep their own min/max (others are pooled). E.g. ``(-1,)`` keeps one
    min/max per xyz coordinate."""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def stats_shape(self) -> tuple[int, ...]:
        """Shape of the min/max arrays: broadcastable to ``shape``."""
        keep = {a % len(self.shape) for a in self.stats_axes}
        return tuple(s if i in keep else 1 for i, s in enumerate(self.shape))


MODALITIES: dict[str, ModalitySpec] = {
    "hand_pose": ModalitySpec(
        name="hand_pose",
        shape=(2, 24, 3),
        unit="cm, relative to each hand's Carpus",
        description="Finger joint positions of both hands (5 chains from the Carpus: thumb 4, fingers 5 each).",
        source=("xsens-segments/position_cm",),
        normalization="minmax",
        stats_axes=(-1,),
    ),
    "body_pose": ModalitySpec(
        name="body_pose",
        shape=(28, 3),
        unit="cm, relative to the centre of mass",
        description="28 skeleton chain points (legs, spine, hip, shoulders, arms) minus xsens-CoM.",
        source=("xsens-segments/position_cm", "xsens-CoM/position_cm"),
        normalization="minmax",
        stats_axes=(-1,),
    ),
    "emg": ModalitySpec(
        name="emg",
        shape=(2, 8),
        unit="Myo EMG envelope (mean |emg| over one frame interval, raw units 0..128)",
        description="Forearm muscle activation, 8 Myo channels per arm.",
        source=("myo-left/emg", "myo-right/emg"),
        normalization="minmax",
        stats_axes=(-1,),
    ),
    "hand_force": ModalitySpec(
        name="hand_force",
        shape=(2, 32, 32),
        unit="tactile glove ADC reading",
        description="Tactile pressure maps of both hands (32x32 taxels).",
        source=("tactile-glove-left/tactile_data", "tactile-glove-right/tactile_data"),
        normalization="fixed_clip",
        fixed_range=TACTILE_CLIP,
    ),
}
MODALITY_NAMES: tuple[str, ...] = tuple(MODALITIES)
TEXT_KINDS: tuple[str, ...] = ("verb", "phrase", "sentence")

# Flattened, one step is 2292 numbers (paper §4, policy action space).
ACTION_DIM = sum(spec.size for spec in MODALITIES.values())
assert ACTION_DIM == 2292


def check_modality_names(names) -> tuple[str, ...]:
    """Validate modality names early, lerobot style."""
    names = tuple(names)
    for n in names:
        if n not in MODALITIES:
            raise ValueError(f"modality must be one of {list(MODALITY_NAMES)}, got {n!r}")
    return names


def check_action_arrays(actions: Mapping[str, np.ndarray], where: str = "actions", steps: int | None = None,
                        allow_flat: bool = False, error: type[Exception] = ValueError) -> dict[str, np.ndarray]:
    """Validate one clip's per-step actions ``{name: (T, *shape)}``: known names, shapes, one shared T (``steps``
    when given) and finite values. Returns float32 copies; with ``allow_flat`` a ``(T, size)`` array is reshaped.
    Raises ``error`` naming ``where``, the modality and what is wrong."""
    out = {}
    for name, arr in actions.items():
        if name not in MODALITIES:
            raise error(f"{where}: unknown modality {name!r}; must be one of {list(MODALITY_NAMES)}")
        arr = np.asarray(arr, dtype=np.float32)
        shape = MODALITIES[name].shape
        if allow_flat and arr.ndim == 2 and arr.shape[1] == int(np.prod(shape)) and arr.shape[1:] != shape:
            arr = arr.reshape((arr.shape[0],) + shape)
        if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape:
            flat = f" (or (T, {int(np.prod(shape))}) flattened)" if allow_flat else ""
            raise error(f"{where}: {name} must have shape (T, {', '.join(map(str, shape))}){flat}, got {arr.shape}")
        if steps is None:
            steps = arr.shape[0]
        if arr.shape[0] != steps:
            raise error(f"{where}: {name} has {arr.shape[0]} steps but the clip has {steps}")
        if not np.isfinite(arr).all():
            raise error(f"{where}: {name} contains NaN or inf values")
        out[name] = arr
    return out


# ----------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------
@dataclass
class NormalizationStats:
    """Min/max per modality (only ``minmax`` modalities need entries), saved as JSON and reused at
    inference (pipelines store them beside their weights)."""

    minimum: dict[str, np.ndarray] = field(default_factory=dict)
    maximum: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"format": "mmsim-normalization-v1", "modalities": {}}
        for name, spec in MODALITIES.items():
            entry: dict = {"method": spec.normalization, "shape": list(spec.shape)}
            if spec.normalization == "fixed_clip":
                entry["range"] = list(spec.fixed_range)
            elif name in self.minimum:
                entry["min"] = np.asarray(self.minimum[name], dtype=np.float64).tolist()
                entry["max"] = np.asarray(self.maximum[name], dtype=np.float64).tolist()
            out["modalities"][name] = entry
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> "NormalizationStats":
        if "modalities" not in d:
            raise ValueError("normalization statistics must have a 'modalities' entry")
        stats = cls()
        for name, entry in d["modalities"].items():
            check_modality_names([name])
            if entry.get("method") == "minmax" and "min" in entry:
                shape = MODALITIES[name].stats_shape()
                stats.minimum[name] = np.asarray(entry["min"], dtype=np.float32).reshape(shape)
                stats.maximum[name] = np.asarray(entry["max"], dtype=np.float32).reshape(shape)
        return stats

    def save(self, path) -> None:
        import json

        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path) -> "NormalizationStats":
        import json

        with open(path) as f:
            return cls.from_dict(json.load(f))

    @classmethod
    def fit(cls, samples: Mapping[str, np.ndarray]) -> "NormalizationStats":
        """Fit min/max from raw clip values ``{name: (N, *shape)}`` (training split only)."""
        stats = cls()
        for name, x in samples.items():
            spec = MODALITIES[check_modality_names([name])[0]]
            if spec.normalization != "minmax":
                continue
            x = np.asarray(x, dtype=np.float64)
            keep = {a % len(spec.shape) for a in spec.stats_axes}
            reduce = (0,) + tuple(i + 1 for i in range(len(spec.shape)) if i not in keep)
            lo = np.nanmin(x, axis=reduce, keepdims=True)[0]
            hi = np.nanmax(x, axis=reduce, keepdims=True)[0]
            stats.minimum[name] = lo.astype(np.float32)
            stats.maximum[name] = hi.astype(np.float32)
        return stats


def normalize(name: str, raw: np.ndarray, stats: NormalizationStats | None) -> np.ndarray:
    """Raw clip values (..., *shape) -> normalised float32 in about [0, 1]."""
    spec = MODALITIES[name]
    raw = np.asarray(raw, dtype=np.float32)
    if spec.normalization == "fixed_clip":
        lo, hi = spec.fixed_range
        return ((np.clip(raw, lo, hi) - lo) / (hi - lo)).astype(np.float32)
    if stats is None or name not in stats.minimum:
        raise KeyError(f"no normalization statistics for modality {name!r}")
    lo, hi = stats.minimum[name], stats.maximum[name]
    return ((raw - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)


def denormalize(name: str, x: np.ndarray, stats: NormalizationStats | None) -> np.ndarray:
    """Inverse of :func:`normalize` (for ``fixed_clip`` only the clipped range is recoverable)."""
    spec = MODALITIES[name]
    x = np.asarray(x, dtype=np.float32)
    if spec.normalization == "fixed_clip":
        lo, hi = spec.fixed_range
        return (x * (hi - lo) + lo).astype(np.float32)
    if stats is None or name not in stats.minimum:
        raise KeyError(f"no normalization statistics for modality {name!r}")
    lo, hi = stats.minimum[name], stats.maximum[name]
    return (x * np.maximum(hi - lo, 1e-6) + lo).astype(np.float32)
