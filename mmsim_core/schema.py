"""The one place that says what each action modality is.

Every module (reader, synthetic world, preprocessing, dataset, model, studio) takes names, shapes,
units, left/right order, the source streams of a recording, how they are aligned to video frames, and
normalisation from here. Conventions follow ActionSense: left before right, Xsens MVN segment order,
Myo EMG channel order, 32x32 tactile glove taxels.

Adding a modality (say the gaze ActionSense records, ``eye-tracking-gaze/position``, shape (2,)) means
one ``ModalitySpec`` entry in ``MODALITIES``: its shape, unit, display name, source streams (per side
or not, with the per-sample shapes it accepts), the alignment (nearest sample or a |x| envelope), the
geometric normalisation (``clip_values``) and the scaling (``minmax`` or ``fixed_clip``). The reader
(``mmsim_core.data.actionsense``), ``mmsim preprocess``, the shards, ``ClipDataset`` and the studio's
uploads and exports then carry it. Two things stay outside: the action encoder needs an expert for it
(``ActionEncoderConfig.modalities``), and the synthetic world has to simulate it to write it.
``ACTION_DIM`` grows with it (update the check below that pins the paper's 2292).

Clip-level values (what ``ClipDataset`` returns and the pipeline consumes) are *normalised*:
``normalize(name, raw, stats)``. The synthetic world's oracle consumes *raw* clip values (after
alignment and the geometric normalisations, before scaling): ``denormalize`` maps back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

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
class StreamSource:
    """One ActionSense stream a modality is read from.

    ``path`` is ``"device/stream"`` as in the recording's HDF5; a ``{side}`` in it means one stream per
    hand (``left`` then ``right``, see ``SIDES``), whose aligned samples are stacked on a new axis 1.
    """

    path: str
    sample_shapes: tuple[tuple[int, ...], ...]
    """Per-sample shapes of ``data`` this modality can use. A stream whose shape suits another modality
    reading it but not this one leaves this modality unavailable (``unusable_reason`` says why); a shape
    no modality can use is an error in the recording."""
    unusable_reason: str = ""

    @property
    def per_side(self) -> bool:
        return "{side}" in self.path

    def paths(self) -> tuple[str, ...]:
        """The concrete ``device/stream`` paths, one per side for a per-side source."""
        if self.per_side:
            return tuple(self.path.format(side=side) for side in SIDES)
        return (self.path,)

    def device_stream(self, side: str | None = None) -> tuple[str, str]:
        """``(device, stream)`` of this source (of ``side`` for a per-side source)."""
        path = self.path.format(side=side) if self.per_side else self.path
        device, _, stream = path.partition("/")
        return device, stream


def _hand_chains_from_carpus(segments: np.ndarray) -> np.ndarray:
    """Xsens segment positions (Q, 63, 3) -> finger chain points relative to each hand's Carpus (Q, 2, 24, 3)."""
    hands = []
    for offset in (LEFT_HAND_OFFSET, RIGHT_HAND_OFFSET):
        chain = segments[:, [offset + i for i in HAND_POSE_INDICES]]  # (Q, 24, 3)
        hands.append(chain - segments[:, offset:offset + 1])
    return np.stack(hands, axis=1)


def _body_chains_minus_com(segments: np.ndarray, com: np.ndarray) -> np.ndarray:
    """Xsens segment positions (Q, S, 3) and centre of mass (Q, 3) -> skeleton chain points minus CoM (Q, 28, 3)."""
    return segments[:, list(BODY_POSE_INDICES)] - com.reshape(len(com), 1, 3)


ALIGNMENTS = ("nearest", "mean_abs")
"""How a stream is sampled at a video frame time: ``"nearest"`` takes the nearest sample in time;
``"mean_abs"`` averages |x| over the samples within ``window_s`` centred on the frame (an envelope of an
oscillating signal such as EMG)."""

ROLES = ("grip",)
"""Roles a modality can play beyond being a condition: ``"grip"``, its clip values say how firmly each
hand holds (the text descriptions' "holding it tightly / gently with left hand"). At most one modality
plays a role."""


@dataclass(frozen=True)
class ModalitySpec:
    """What one action modality is, per time step, and where a recording keeps it."""

    name: str
    shape: tuple[int, ...]
    unit: str
    description: str
    sources: tuple[StreamSource, ...]
    """The ActionSense streams it is computed from, in the order ``clip_values`` takes them."""
    normalization: str
    """``"fixed_clip"``: clip to ``fixed_range`` then scale to [0, 1] (no statistics needed);
    ``"minmax"``: min-max scaling to [0, 1] with statistics from the training split."""
    fixed_range: tuple[float, float] | None = None
    stats_axes: tuple[int, ...] = field(default=())
    """Per-step axes that keep their own min/max (others are pooled). E.g. ``(-1,)`` keeps one
    min/max per xyz coordinate."""
    display_name: str = ""
    align: str = "nearest"
    """One of ``ALIGNMENTS``."""
    window_s: float = 0.0
    """Width of the ``"mean_abs"`` window, seconds."""
    clip_values: Callable[..., np.ndarray] | None = None
    """Aligned source samples, one array ``(Q, *sample shape)`` per source (per-side sources
    ``(Q, 2, *sample shape)``), -> raw clip values ``(Q, *shape)``: the geometric normalisations. None:
    the single source's samples are the values."""
    roles: frozenset[str] = frozenset()

    def __post_init__(self):
        if self.align not in ALIGNMENTS:
            raise ValueError(f"{self.name}: align must be one of {list(ALIGNMENTS)}, got {self.align!r}")
        if self.align == "mean_abs" and not self.window_s > 0:
            raise ValueError(f"{self.name}: align='mean_abs' needs window_s > 0")
        if self.normalization not in ("fixed_clip", "minmax"):
            raise ValueError(f"{self.name}: normalization must be 'fixed_clip' or 'minmax', got {self.normalization!r}")
        if (self.normalization == "fixed_clip") != (self.fixed_range is not None):
            raise ValueError(f"{self.name}: fixed_range goes with normalization='fixed_clip' (and only with it)")
        if not self.sources:
            raise ValueError(f"{self.name}: needs at least one source stream")
        if self.clip_values is None and len(self.sources) != 1:
            raise ValueError(f"{self.name}: several source streams need clip_values to combine them")
        unknown = set(self.roles) - set(ROLES)
        if unknown:
            raise ValueError(f"{self.name}: unknown roles {sorted(unknown)}; known: {list(ROLES)}")
        if "grip" in self.roles and (self.normalization != "fixed_clip" or self.shape[:1] != (len(SIDES),)):
            raise ValueError(f"{self.name}: the grip role needs a fixed_clip modality with one entry per hand")
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name.replace("_", " "))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def source(self) -> tuple[str, ...]:
        """Every concrete ``device/stream`` path it reads."""
        return tuple(p for src in self.sources for p in src.paths())

    def stats_shape(self) -> tuple[int, ...]:
        """Shape of the min/max arrays: broadcastable to ``shape``."""
        keep = {a % len(self.shape) for a in self.stats_axes}
        return tuple(s if i in keep else 1 for i, s in enumerate(self.shape))

    def from_streams(self, aligned: Sequence[np.ndarray]) -> np.ndarray:
        """Raw clip values ``(Q, *shape)`` float32 from the aligned source samples (see ``clip_values``)."""
        values = self.clip_values(*aligned) if self.clip_values is not None else aligned[0]
        values = np.asarray(values, dtype=np.float32)
        return values.reshape((len(values),) + self.shape)


_XSENS_SEGMENTS_ANY = ((NUM_SEGMENTS_WITH_FINGERS, 3), (NUM_BODY_SEGMENTS, 3))

MODALITIES: dict[str, ModalitySpec] = {
    "hand_pose": ModalitySpec(
        name="hand_pose",
        display_name="hand pose",
        shape=(2, 24, 3),
        unit="cm, relative to each hand's Carpus",
        description="Finger joint positions of both hands (5 chains from the Carpus: thumb 4, fingers 5 each).",
        sources=(StreamSource("xsens-segments/position_cm", ((NUM_SEGMENTS_WITH_FINGERS, 3),),
                              unusable_reason="no finger tracking"),),
        clip_values=_hand_chains_from_carpus,
        normalization="minmax",
        stats_axes=(-1,),
    ),
    "body_pose": ModalitySpec(
        name="body_pose",
        display_name="body pose",
        shape=(28, 3),
        unit="cm, relative to the centre of mass",
        description="28 skeleton chain points (legs, spine, hip, shoulders, arms) minus xsens-CoM.",
        sources=(StreamSource("xsens-segments/position_cm", _XSENS_SEGMENTS_ANY),
                 StreamSource("xsens-CoM/position_cm", ((3,), (1, 3)))),
        clip_values=_body_chains_minus_com,
        normalization="minmax",
        stats_axes=(-1,),
    ),
    "emg": ModalitySpec(
        name="emg",
        display_name="EMG",
        shape=(2, 8),
        unit="Myo EMG envelope (mean |emg| over one frame interval, raw units 0..128)",
        description="Forearm muscle activation, 8 Myo channels per arm.",
        sources=(StreamSource("myo-{side}/emg", ((8,),)),),
        align="mean_abs",
        window_s=0.1,
        normalization="minmax",
        stats_axes=(-1,),
    ),
    "hand_force": ModalitySpec(
        name="hand_force",
        display_name="hand force",
        shape=(2, 32, 32),
        unit="tactile glove ADC reading",
        description="Tactile pressure maps of both hands (32x32 taxels).",
        sources=(StreamSource("tactile-glove-{side}/tactile_data", ((32, 32),)),),
        normalization="fixed_clip",
        fixed_range=TACTILE_CLIP,
        roles=frozenset({"grip"}),
    ),
}
MODALITY_NAMES: tuple[str, ...] = tuple(MODALITIES)
TEXT_KINDS: tuple[str, ...] = ("verb", "phrase", "sentence")

# Flattened, one step is 2292 numbers (paper §4, policy action space).
ACTION_DIM = sum(spec.size for spec in MODALITIES.values())
assert ACTION_DIM == 2292


def modality_with_role(role: str, among=None) -> str | None:
    """The modality playing ``role`` (see ``ROLES``), if it is registered (and among ``among`` when given)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
    for name, spec in MODALITIES.items():
        if role in spec.roles and (among is None or name in among):
            return name
    return None


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
