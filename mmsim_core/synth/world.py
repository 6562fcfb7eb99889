"""The synthetic egocentric kitchen: scene description, world state, dynamics and the renderer.

This module *is* the oracle. ``render(scene, initial_state, actions, frame_times)`` turns raw clip
actions (ActionSense units, the same values ``mmsim preprocess`` puts in clips before min-max
scaling) into world-video frames, and the recorded video of every synthetic recording is produced by
exactly this code from the true signals at the frame times. Every modality acts continuously, through
channels the others do not carry:

=============  ==============================================================================
body_pose      Head (vs Neck and the shoulder line) places and aims the head-mounted camera;
               the Hand segments place the hands (and anything they hold); forearms drawn.
hand_pose      finger configuration drawn large (open hand, pinch, power grip); the closure decides
               what a hand can hold (an open hand drops things, a fist cannot wrap a jar); hand
               heading turns a held object, hand roll tilts a held pitcher (pouring).
hand_force     grip: an object is held while force is above its weight's need, slips below it and
               falls without it; soft objects (sponge, potato) squash in proportion and spring
               back; scrubbing and peeling progress in proportion; knife cuts and notches; a pressed
               hand blanches, a relaxed one darkens.
emg            effort against a held object's weight sets how high it rises and how much it droops;
               flexor-extensor balance twists a jar lid or a held object; the forearm's muscles
               bulge with effort.
=============  ==============================================================================

Each object kind is one small class (:class:`WorldObject` subclasses) with its own ``step`` and
``draw``. World state (per video frame, see ``STATE_FIELDS``) holds only what integrates over time:
which segment (scene layout) is active and, per object slot, the common pose/grasp fields
(``OBJECT_FIELDS``) plus up to three fields of the object's own (``<class>.FIELDS``, e.g. a pan's
``dirt``). Given the state at any frame and the actions from there on, the rest of the video follows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import cv2
import numpy as np

from mmsim_core import schema
from mmsim_core.errors import ActionInputError
from mmsim_core.synth import kinematics as kin

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Constants of the world (raw-unit thresholds the oracle applies to the clip actions)
# ----------------------------------------------------------------------------------------------
IMAGE_SIZE = (320, 180)  # (W, H), 16:9 like the Pupil world camera
FOCAL_PX = 220.0
EYE_OFFSET = (5.0, 4.0)
"""Camera (glasses) ahead of / above the Xsens Head segment, cm."""
FORCE_NORM = 0.55
"""Mean clipped tactile activation (``(ADC-530)/70`` clipped to [0,1], averaged over the 32x32 map) of
a firm whole-hand grip; the oracle's grip force is that mean divided by ``FORCE_NORM``."""
GRASP_ON, GRASP_OFF = 0.30, 0.14  # grip force hysteresis for taking hold of / letting go of an object
GRIP_NEED = 0.011
"""Grip force per unit of weight a held object needs; below it the object slips down in the hand."""
SLIP_RATE = 40.0  # cm/s of slip at zero margin ... full deficit
SLIP_DROP = 5.0  # cm of slip after which the object falls out of the hand
GRAVITY = 300.0  # cm/s^2 (a little faster than g: objects drop within a few frames)
CUT_ON, CUT_REARM = 0.62, 0.35  # knife: a cut needs a force peak, the next one a release first
PEEL_ON, PEEL_RATE = 0.25, 0.45  # peel fraction per second per unit force above PEEL_ON
SCRUB_RATE = 0.22  # dirt decays as exp(-SCRUB_RATE * force * t) under a pressed sponge
TWIST_GRIP = 0.30
TWIST_RATE = 5.0  # lid radians per second per unit twist
HELD_TWIST_RATE = 1.2  # a held object's yaw, radians per second per unit twist
LID_OPEN = 3.0 * np.pi  # lid comes off after 1.5 turns
LID_MAX = 4.0 * np.pi
POUR_ON = np.deg2rad(35.0)
POUR_RATE = 0.9  # glass fill per second per radian of tilt beyond POUR_ON
EMG_BASE = 5.0
"""Resting EMG envelope (raw units); ``effort`` is the mean envelope above it."""
EMG_TWIST_SCALE = 32.0
"""Flexor (ch 0-3) minus extensor (ch 4-7) envelope that counts as a full-speed twist."""
LIFT_RAMP = 18.0  # effort above the object's weight over which the lift gain goes 0 -> 1
DROOP = 0.55  # radians a held object droops by when no effort holds it up
FOREARM_CM, BULGE_CM, BULGE_EFFORT = 4.0, 4.5, 45.0  # forearm width at rest, extra at BULGE_EFFORT
FORCE_CAP = 1.5
"""Largest grip force the oracle reads (a whole glove saturated reads 1/FORCE_NORM): a squeeze beyond it
changes nothing more."""
PALE = (250, 236, 228)
RELAXED_SHADE = 0.7
"""Pressure shows on the whole hand: a relaxed hand is drawn at this shade of its colour, a hand pressing
at FORCE_CAP pale (PALE), the first pressure showing most (square root); so a firmer or looser grip on a rigid object (a pitcher,
a jar) is visible at 64x64, not only where it squashes a soft one."""
FINGER_CM = 2.2  # finger width drawn (visible at 64x64)

MAX_OBJECTS = 3
TOOLS = (None, "knife", "peeler")

COMMON_FIELDS = ("x", "y", "z", "yaw", "tilt", "held", "off_x", "off_y", "grasp_hand_z", "grasp_obj_z",
                 "yaw_off", "vz", "squash")
NUM_OWN_FIELDS = 3
OBJECT_FIELDS = COMMON_FIELDS + tuple(f"own{k}" for k in range(NUM_OWN_FIELDS))
"""Columns of one object slot; ``own0..2`` are the object class's ``FIELDS``."""
STATE_FIELDS = ("segment",) + tuple(f"obj{i}.{f}" for i in range(MAX_OBJECTS) for f in OBJECT_FIELDS)
NF = len(OBJECT_FIELDS)
X, Y, Z, YAW, TILT, HELD, OFF_X, OFF_Y, GHZ, GOZ, YAW_OFF, VZ, SQUASH, OWN0, OWN1, OWN2 = range(NF)


# ----------------------------------------------------------------------------------------------
# Scene description (JSON-serialisable; textures are arrays kept beside it)
# ----------------------------------------------------------------------------------------------
@dataclass
class ObjectSpec:
    """One object of a segment's layout. ``dims`` per kind (cm):
    pan (radius, depth, handle length), plate (radius, height, -), potato (half length, half width,
    height), cucumber (length, radius, -), board (length, width, thickness), jar (radius, height,
    lid height), sponge (length, width, height), pitcher (radius, height, -), glass (radius, height, -)."""

    kind: str
    x: float
    y: float
    yaw: float
    dims: tuple[float, float, float]
    color: tuple[int, int, int]
    color2: tuple[int, int, int]
    z_rest: float = 0.0
    weight: float = 10.0
    """EMG effort (raw envelope units above rest) needed before a held object starts to rise; the grip
    force it needs is ``GRIP_NEED * weight``."""
    graspable: bool = True
    progress0: float = 0.0
    """Initial value of the object's first own field (dirt of a pan or plate)."""
    aux0: float = 0.0
    """Initial value of the object's second own field (water in a pitcher)."""

    def __post_init__(self):
        if self.kind not in OBJECT_CLASSES:
            raise ValueError(f"kind must be one of {list(OBJECT_CLASSES)}, got {self.kind!r}")
        self.dims = tuple(float(d) for d in self.dims)
        self.color = tuple(int(c) for c in self.color)
        self.color2 = tuple(int(c) for c in self.color2)

    @property
    def height(self) -> float:
        return OBJECT_CLASSES[self.kind].height_of(self.dims)

    @property
    def footprint(self) -> float:
        """Rough radius on the counter (cm), for reach."""
        return OBJECT_CLASSES[self.kind].footprint_of(self.dims)


@dataclass
class Segment:
    """A stretch of the recording with one counter layout; the labelled activity lies inside it."""

    t0: float
    t1: float
    activity: str
    act_t0: float
    act_t1: float
    rating: str
    objects: list[ObjectSpec]
    tool_right: str | None = None
    notes: str = ""

    def __post_init__(self):
        self.objects = [o if isinstance(o, ObjectSpec) else ObjectSpec(**o) for o in self.objects]
        if len(self.objects) > MAX_OBJECTS:
            raise ValueError(f"a segment holds at most {MAX_OBJECTS} objects, got {len(self.objects)}")
        if self.tool_right not in TOOLS:
            raise ValueError(f"tool_right must be one of {list(TOOLS)}, got {self.tool_right!r}")


@dataclass
class Scene:
    """Everything static about one recording: the subject's look, camera, counter, segment layouts.
    Times are seconds since the recording start (``t_start`` is its epoch time)."""

    subject: str
    t_start: float
    segments: list[Segment]
    skin: tuple[int, int, int]
    sleeve: tuple[int, int, int]
    pitch0: float
    """Camera pitch (rad, down positive) at an upright head; body pose adds the head's forward tilt."""
    counter_z: float
    """Counter top height in the CoM frame (cm)."""
    counter_edge: float = 18.0
    wall_y: float = 98.0
    cabinet: tuple[int, int, int] = (70, 62, 55)
    shadow: tuple[int, int, int] = (60, 55, 50)
    image_size: tuple[int, int] = IMAGE_SIZE
    focal: float = FOCAL_PX
    counter_texture: np.ndarray | None = field(default=None, repr=False)
    wall_texture: np.ndarray | None = field(default=None, repr=False)

    TEX_PX_PER_CM = 2.0
    TEX_X = (-75.0, 75.0)

    def __post_init__(self):
        self.segments = [s if isinstance(s, Segment) else Segment(**s) for s in self.segments]
        self.image_size = tuple(int(v) for v in self.image_size)
        self.skin, self.sleeve = tuple(self.skin), tuple(self.sleeve)
        self.cabinet, self.shadow = tuple(self.cabinet), tuple(self.shadow)
        self._seg_t0 = np.array([s.t0 for s in self.segments], dtype=np.float64)
        self._objects: dict[int, list[WorldObject]] = {}

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("counter_texture")
        d.pop("wall_texture")
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, counter_texture=None, wall_texture=None) -> "Scene":
        d = json.loads(text)
        return cls(**d, counter_texture=counter_texture, wall_texture=wall_texture)

    def segment_at(self, t: float) -> int:
        """Index of the segment whose layout is on the counter at time ``t`` (seconds since start)."""
        return int(np.clip(np.searchsorted(self._seg_t0, t, side="right") - 1, 0, len(self.segments) - 1))

    def objects(self, segment: int) -> list["WorldObject"]:
        """The world objects of segment ``segment``'s layout (one per ``ObjectSpec``, slot order)."""
        if segment not in self._objects:
            self._objects[segment] = [OBJECT_CLASSES[o.kind](o) for o in self.segments[segment].objects]
        return self._objects[segment]

    def initial_state(self, segment: int) -> np.ndarray:
        """State at the moment segment ``segment``'s layout appears (nothing held)."""
        s = np.zeros(len(STATE_FIELDS), dtype=np.float64)
        s[0] = segment
        for i in range(MAX_OBJECTS):
            s[1 + i * NF + HELD] = -1
        for i, obj in enumerate(self.objects(segment)):
            obj.init_state(object_state(s, i))
        return s


def object_state(state: np.ndarray, i: int) -> np.ndarray:
    """View of object slot ``i`` in a state vector (fields ``OBJECT_FIELDS``)."""
    return state[1 + i * NF: 1 + (i + 1) * NF]

# ----------------------------------------------------------------------------------------------
# What the oracle reads from one frame's raw actions
# ----------------------------------------------------------------------------------------------
@dataclass
class Camera:
    center: np.ndarray  # (3,) CoM frame
    rot: np.ndarray  # (3, 3) rows: image right, image down, forward
    focal: float
    cx: float
    cy: float

    def project(self, p: np.ndarray):
        """``(N, 3)`` world -> ``(N, 2)`` pixels and ``(N,)`` depth (cm along the view axis)."""
        pc = (np.asarray(p, dtype=np.float64) - self.center) @ self.rot.T
        z = pc[:, 2]
        zs = np.maximum(z, 1e-3)
        return np.stack([self.focal * pc[:, 0] / zs + self.cx, self.focal * pc[:, 1] / zs + self.cy], -1), z

    def plane_homography(self, origin, ex, ey) -> np.ndarray:
        """Homography from plane coords ``(a, b, 1)`` (point ``origin + a ex + b ey``) to pixels."""
        K = np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1.0]])
        M = np.stack([self.rot @ ex, self.rot @ ey, self.rot @ (np.asarray(origin) - self.center)], axis=1)
        return K @ M


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_from_body(body_pose: np.ndarray, scene: Scene) -> Camera:
    """The head-mounted camera from one frame's body pose ``(28, 3)`` (minus CoM): torso heading from
    the shoulder line, pitch = ``scene.pitch0`` + forward tilt of Neck->Head, yaw += sideways tilt."""
    bp = np.asarray(body_pose, dtype=np.float64)
    head, neck = bp[kin.BODY_INDEX["Head"]], bp[kin.BODY_INDEX["Neck"]]
    sl, sr = bp[kin.BODY_INDEX["Left Upper Arm"]], bp[kin.BODY_INDEX["Right Upper Arm"]]
    v = sr - sl
    torso_yaw = np.arctan2(v[1], v[0])
    d = _rz(-torso_yaw) @ (head - neck)
    head_pitch = np.arctan2(d[1], d[2])
    tilt = np.arcsin(np.clip(d[0] / max(np.linalg.norm(d), 1e-6), -1, 1))
    yaw = torso_yaw - tilt
    pitch = scene.pitch0 + head_pitch
    Rz = _rz(yaw)
    fwd = Rz @ np.array([0.0, np.cos(pitch), -np.sin(pitch)])
    right = Rz @ np.array([1.0, 0.0, 0.0])
    up = np.cross(right, fwd)
    center = head + Rz @ np.array([0.0, EYE_OFFSET[0], EYE_OFFSET[1]])
    w, h = scene.image_size
    return Camera(center, np.stack([right, -up, fwd]), scene.focal, w / 2.0, h / 2.0)


@dataclass
class HandReading:
    carpus: np.ndarray  # (3,) CoM frame
    elbow: np.ndarray
    seg: np.ndarray  # (20, 3) finger segments, world positions
    grip: np.ndarray  # (3,) grip point, world
    yaw: float
    roll: float
    curl: float  # finger closure, 0 flat open hand .. 1 fist (kinematics.hand_curl)
    force: float  # grip force (tactile), ~0 none .. 1 firm
    effort: float  # EMG envelope above rest
    twist: float  # EMG flexor-extensor balance, ~[-1, 1]


def read_hands(frame: Mapping[str, np.ndarray]) -> list[HandReading]:
    """Per-hand quantities the oracle uses, from one frame's raw actions."""
    bp = np.asarray(frame["body_pose"], dtype=np.float64)
    out = []
    for h, side in enumerate(("Left", "Right")):
        carpus = bp[kin.BODY_INDEX[f"{side} Hand"]]
        rel = kin.hand_segments(np.asarray(frame["hand_pose"][h], dtype=np.float64))  # (20, 3)
        tac = np.clip((np.asarray(frame["hand_force"][h], dtype=np.float32) - schema.TACTILE_CLIP[0])
                      / (schema.TACTILE_CLIP[1] - schema.TACTILE_CLIP[0]), 0.0, 1.0)
        env = np.asarray(frame["emg"][h], dtype=np.float64)
        out.append(HandReading(
            carpus=carpus, elbow=bp[kin.BODY_INDEX[f"{side} Forearm"]], seg=carpus + rel,
            grip=carpus + kin.grip_point(rel), yaw=float(kin.hand_yaw(rel)), roll=float(kin.hand_roll(rel)),
            curl=float(kin.hand_curl(rel)), force=float(min(tac.mean() / FORCE_NORM, FORCE_CAP)),
            effort=float(env.mean() - EMG_BASE), twist=float((env[:4].mean() - env[4:].mean()) / EMG_TWIST_SCALE)))
    return out


def lift_gain(effort: float, weight: float) -> float:
    return float(np.clip((effort - weight) / LIFT_RAMP, 0.0, 1.0))


# ----------------------------------------------------------------------------------------------
# Objects: one class per kind, each with its own dynamics (``step``) and look (``draw``)
# ----------------------------------------------------------------------------------------------
@dataclass
class StepContext:
    """What one object sees while the world steps or draws: the scene, this frame's hand readings,
    the tools in the hands, the time step and the other objects of the layout with their states."""

    scene: Scene
    hands: list[HandReading]
    tools: tuple[str | None, str | None]
    dt: float
    objects: list["WorldObject"]
    states: list[np.ndarray]

    def find(self, kind: str):
        """``(object, state)`` of the first object of ``kind`` in the layout, or None."""
        for o, st in zip(self.objects, self.states):
            if o.kind == kind:
                return o, st
        return None


class WorldObject:
    """An object on the counter. The base class holds what every object does: it can be taken into a
    hand (grip force above ``GRASP_ON`` with a finger closure in ``curl_range``), follows the hand
    while the grip lasts, slips when the grip is weaker than its weight needs, rises only as far as
    EMG effort allows (drooping when the effort is short), squashes by ``soft`` times the grip force,
    and falls back to the counter when let go."""

    kind = ""
    FIELDS: tuple[str, ...] = ()
    soft = 0.04
    reach_cm = 9.0
    curl_range = (0.22, 0.88)
    """Finger closures that can hold it: an open hand cannot, and a fist cannot wrap a wide object."""

    def __init__(self, spec: ObjectSpec):
        self.spec = spec

    # --- geometry
    @staticmethod
    def height_of(dims) -> float:
        return dims[1]

    @staticmethod
    def footprint_of(dims) -> float:
        return dims[0]

    def own(self, st: np.ndarray, name: str) -> float:
        return float(st[OWN0 + self.FIELDS.index(name)])

    def set_own(self, st: np.ndarray, name: str, value: float) -> None:
        st[OWN0 + self.FIELDS.index(name)] = value

    def init_state(self, st: np.ndarray) -> None:
        o = self.spec
        st[X], st[Y], st[Z], st[YAW], st[HELD] = o.x, o.y, o.z_rest, o.yaw, -1
        if self.FIELDS:
            st[OWN0] = o.progress0
        if len(self.FIELDS) > 1:
            st[OWN1] = o.aux0

    def grasp_point(self, st: np.ndarray, zc: float) -> np.ndarray:
        return np.array([st[X], st[Y], zc + st[Z] + 0.55 * self.spec.height])

    def base(self, st, zc) -> np.ndarray:
        return np.array([st[X], st[Y], zc + st[Z]])

    def tilt_offset(self, st: np.ndarray, height: float) -> np.ndarray:
        """Horizontal shift of the top relative to the bottom for the object's tilt (its x axis)."""
        return height * np.sin(st[TILT]) * _rz(st[YAW])[:2, 0]

    def can_hold(self, hand: HandReading) -> bool:
        lo, hi = self.curl_range
        return self.spec.graspable and lo <= hand.curl <= hi

    # --- dynamics
    def take(self, st: np.ndarray, h: int, hand: HandReading) -> None:
        st[HELD] = h
        st[OFF_X], st[OFF_Y] = st[X] - hand.grip[0], st[Y] - hand.grip[1]
        st[GHZ], st[GOZ] = hand.grip[2], st[Z]
        st[YAW_OFF] = st[YAW] - hand.yaw
        st[VZ] = 0.0  # while held: how far it has slipped down through the fingers

    def step(self, st: np.ndarray, ctx: StepContext) -> None:
        o, dt = self.spec, ctx.dt
        h = int(st[HELD])
        if h >= 0:
            hand = ctx.hands[h]
            if hand.force < GRASP_OFF or not self.can_hold(hand):
                st[HELD], st[VZ] = -1, 0.0  # let go: it falls from where it is
            else:
                need = GRIP_NEED * o.weight
                if hand.force < need:  # too weak a grip for the weight: it slides through the fingers
                    st[VZ] += SLIP_RATE * (need - hand.force) / need * dt
                if st[VZ] > SLIP_DROP:
                    st[HELD], st[VZ] = -1, 0.0
        h = int(st[HELD])
        if h >= 0:
            hand = ctx.hands[h]
            gain = lift_gain(hand.effort, o.weight)
            rise = max(0.0, hand.grip[2] - st[GHZ])
            st[X], st[Y] = hand.grip[0] + st[OFF_X], hand.grip[1] + st[OFF_Y]
            st[Z] = max(o.z_rest, st[GOZ] - st[VZ] + rise * gain)
            st[YAW_OFF] += HELD_TWIST_RATE * hand.twist * dt  # flexor/extensor balance turns it in the hand
            st[YAW] = hand.yaw + st[YAW_OFF]
            # effort short of the weight: the hand is up, the object hangs from it and droops
            st[TILT] = DROOP * (1.0 - gain) * min(rise / 6.0, 1.0)
            st[SQUASH] = self.soft * min(hand.force, 1.4)
        else:
            if st[Z] > o.z_rest:  # falls back onto the counter
                st[VZ] -= GRAVITY * dt
                st[Z] = max(o.z_rest, st[Z] + st[VZ] * dt)
                if st[Z] <= o.z_rest:
                    st[VZ] = 0.0
            else:
                st[Z], st[VZ] = o.z_rest, 0.0
            k = np.exp(-dt / 0.08)  # soft things spring back, tilted ones settle
            st[TILT] *= k
            st[SQUASH] = self.pressed_squash(st, ctx) + k * st[SQUASH]

    def pressed_squash(self, st, ctx) -> float:
        return 0.0

    # --- drawing
    def shadow(self, p: "_Painter", st, zc, color) -> None:
        r = self.spec.footprint
        p.poly(_circle(st[X] + 1.0, st[Y] + 1.0, zc + 0.01, r, yaw=st[YAW]), color)

    def draw(self, p: "_Painter", st: np.ndarray, ctx: StepContext) -> None:
        raise NotImplementedError


class _Scrubbed(WorldObject):
    """A dish with dirt that a pressed sponge wipes off in proportion to the grip force on it."""

    FIELDS = ("dirt",)
    DIRT_COLOR = (112, 78, 40)

    def step(self, st, ctx):
        super().step(st, ctx)
        sp = ctx.find("sponge")
        if sp is None:
            return
        sponge, ss = sp
        h = int(ss[HELD])
        if h < 0:
            return
        d = np.hypot(ss[X] - st[X], ss[Y] - st[Y])
        if d < self.spec.dims[0] - 1.5 and ss[Z] < st[Z] + self.spec.height + 3.0:
            self.set_own(st, "dirt", self.own(st, "dirt") * np.exp(-SCRUB_RATE * ctx.hands[h].force * ctx.dt))

    def draw_dirt(self, p, st, ctx, z_top, radius):
        dirt = self.own(st, "dirt")
        if dirt < 0.02:
            return
        x, y = st[X], st[Y]
        for k in range(5):  # five smudges that shrink as they are wiped
            a = st[YAW] + 1.3 * k
            c = (0.0 if k == 0 else 0.5 * radius) * np.array([np.cos(a), np.sin(a)])
            r = radius * (0.45 if k == 0 else 0.3) * np.sqrt(dirt)
            p.poly(_circle(x + c[0], y + c[1], z_top, r, n=12), _shade(self.DIRT_COLOR, 0.9 + 0.05 * k))


class Pan(_Scrubbed):
    kind = "pan"
    reach_cm = 7.0
    curl_range = (0.35, 1.0)  # held by the handle: a fist is fine

    def grasp_point(self, st, zc):
        r, depth, hl = self.spec.dims
        d = _rz(st[YAW]) @ np.array([-(r + 0.7 * hl), 0.0, 0.0])
        return np.array([st[X] + d[0], st[Y] + d[1], zc + st[Z] + depth])

    def draw(self, p, st, ctx):
        o = self.spec
        r, depth, hl = o.dims
        x, y, z = st[X], st[Y], ctx.scene.counter_z + st[Z]
        off = self.tilt_offset(st, depth)
        p.cylinder(x, y, z, z + depth, r, _shade(o.color, 0.7), o.color, top_offset=off)
        p.poly(_circle(x + off[0], y + off[1], z + depth, 0.86 * r), o.color2)  # inside
        self.draw_dirt(p, st, ctx, z + depth, 0.86 * r)
        hd = _rz(st[YAW]) @ np.array([-1.0, 0.0, 0.0])
        a = np.array([x, y, z + depth]) + r * hd
        p.line(a, a + hl * hd, 3.0, _shade(o.color, 0.5))


class Plate(_Scrubbed):
    kind = "plate"
    DIRT_COLOR = (140, 100, 50)

    def draw(self, p, st, ctx):
        o = self.spec
        r, hh, _ = o.dims
        x, y, z = st[X], st[Y], ctx.scene.counter_z + st[Z]
        off = self.tilt_offset(st, 3 * hh)
        p.cylinder(x, y, z, z + hh, r, _shade(o.color, 0.75), o.color, top_offset=off)
        p.poly(_circle(x + off[0], y + off[1], z + hh, 0.68 * r), o.color2)
        self.draw_dirt(p, st, ctx, z + hh, 0.68 * r)
        mark = np.array([x + off[0], y + off[1], z + hh]) + _rz(st[YAW]) @ np.array([0.84 * r, 0.0, 0.0])
        p.poly(_circle(mark[0], mark[1], mark[2], 0.14 * r, n=8), _shade(o.color2, 0.5))  # shows turning


def _knife_contact(obj: WorldObject, st, ctx, length: float, zc: float):
    """Where the right hand's knife meets a long object: (u along its axis 0..1, in contact)."""
    hand = ctx.hands[1]
    c = _knife_point(hand)
    ax = _rz(st[YAW]) @ np.array([1.0, 0.0, 0.0])
    rel = c[:2] - (np.array([st[X], st[Y]]) - 0.5 * length * ax[:2])
    u = float(rel @ ax[:2]) / length
    perp = abs(float(rel @ np.array([-ax[1], ax[0]])))
    contact = 0.0 <= u < 1.0 and perp < 4.5 and c[2] < zc + st[Z] + obj.spec.height + 4.0
    return u, contact


class _Sliced(WorldObject):
    """Food cut with a knife: a cut needs a force peak in contact (then a release to re-arm); while
    the blade presses, it sinks into the food in proportion to the force."""

    def length(self) -> float:
        raise NotImplementedError

    def step(self, st, ctx):
        super().step(st, ctx)
        if ctx.tools[1] != "knife":
            return
        hand = ctx.hands[1]
        u, contact = _knife_contact(self, st, ctx, self.length(), ctx.scene.counter_z)
        if hand.force < CUT_REARM:
            self.set_own(st, "rearm", 1.0)
        elif contact and hand.force > CUT_ON and self.own(st, "rearm") > 0.5:
            self.set_own(st, "cuts", float(int(self.own(st, "cuts")) | (1 << min(int(u * 8), 7))))
            self.set_own(st, "rearm", 0.0)

    def draw_notch(self, p, st, ctx, top_z):
        """The blade pressing in: a dark wedge whose depth follows the grip force."""
        if ctx.tools[1] != "knife":
            return
        hand = ctx.hands[1]
        u, contact = _knife_contact(self, st, ctx, self.length(), ctx.scene.counter_z)
        if not contact or hand.force < 0.1:
            return
        ax = _rz(st[YAW])[:, 0]
        side = _rz(st[YAW])[:, 1]
        c = np.array([st[X], st[Y], top_z]) + ax * self.length() * (u - 0.5)
        depth = min(hand.force, 1.3) * 0.8 * self.spec.height
        w = 1.2 * self.spec.dims[1]
        p.poly(np.stack([c - w * side, c + w * side, c + w * side + 0.6 * ax - [0, 0, depth],
                         c - w * side + 0.6 * ax - [0, 0, depth]]), _shade(self.spec.color2, 0.55))


class Potato(_Sliced):
    kind = "potato"
    FIELDS = ("peel", "cuts", "rearm")
    soft = 0.16
    reach_cm = 8.0
    curl_range = (0.22, 0.95)

    @staticmethod
    def height_of(dims):
        return dims[2]

    def length(self):
        return 2 * self.spec.dims[0]

    def init_state(self, st):
        super().init_state(st)
        self.set_own(st, "rearm", 1.0)

    def _peeling(self, st, ctx) -> float:
        """Force above ``PEEL_ON`` of a peeler blade on the potato (0 when not peeling)."""
        if ctx.tools[1] != "peeler":
            return 0.0
        hand = ctx.hands[1]
        centre = np.array([st[X], st[Y], ctx.scene.counter_z + st[Z] + 0.5 * self.spec.height])
        if np.linalg.norm(_knife_point(hand) - centre) < 9.0:
            return max(0.0, hand.force - PEEL_ON)
        return 0.0

    def step(self, st, ctx):
        super().step(st, ctx)
        self.set_own(st, "peel", min(1.0, self.own(st, "peel") + PEEL_RATE * self._peeling(st, ctx) * ctx.dt))

    def shadow(self, p, st, zc, color):
        a, b, _ = self.spec.dims
        p.poly(_circle(st[X] + 1.0, st[Y] + 1.0, zc + 0.01, b, rx=a, yaw=st[YAW]), color)

    def draw(self, p, st, ctx):
        o = self.spec
        a, b, hh = o.dims
        x, y, z, yaw = st[X], st[Y], ctx.scene.counter_z + st[Z], st[YAW]
        sq = 1.0 - st[SQUASH]
        peel = float(np.clip(self.own(st, "peel"), 0.0, 1.0))
        e1 = _circle(x, y, z + 0.35 * hh * sq, b * (2 - sq), rx=a, yaw=yaw)
        off = self.tilt_offset(st, 0.8 * hh)
        e2 = _circle(x + off[0], y + off[1], z + 0.8 * hh * sq, 0.75 * b * (2 - sq), rx=0.8 * a, yaw=yaw)
        p.poly(np.concatenate([e1, e2]), o.color)
        if peel > 0.01:  # the peeled (pale) part grows over the skin
            p.poly(_circle(x + off[0], y + off[1], z + 0.82 * hh * sq, 0.75 * b * np.sqrt(peel),
                           rx=0.8 * a * np.sqrt(peel), yaw=yaw, n=12), o.color2)
        p.poly(_circle(x + off[0], y + off[1], z + hh * sq, 0.3 * b, rx=0.4 * a, yaw=yaw, n=10),
               _shade(o.color2 if peel > 0.5 else o.color, 1.12))
        cuts = int(self.own(st, "cuts"))
        ax, side = _rz(yaw)[:, 0], _rz(yaw)[:, 1]
        for k in range(8):
            if cuts & (1 << k):  # a pale cut across the potato at each slice
                c = np.array([x, y, z + hh * sq]) + ax * a * ((k + 0.5) / 4.0 - 1.0)
                p.line(c - 0.9 * b * side, c + 0.9 * b * side, 0.9, o.color2)
        self.draw_notch(p, st, ctx, z + hh * sq)
        f = self._peeling(st, ctx)
        if f > 0:  # a strip of peel curls off the blade, longer the harder it presses
            tip = _knife_point(ctx.hands[1])
            p.line(tip, tip + np.array([0.0, -1.0, 1.0]) * (2.0 + 9.0 * f), 1.6, _shade(o.color, 0.8))


class Cucumber(_Sliced):
    kind = "cucumber"
    FIELDS = ("cuts", "rearm")
    soft = 0.08
    reach_cm = 7.0

    @staticmethod
    def height_of(dims):
        return 2 * dims[1]

    @staticmethod
    def footprint_of(dims):
        return dims[0] / 2

    def length(self):
        return self.spec.dims[0]

    def init_state(self, st):
        super().init_state(st)
        self.set_own(st, "rearm", 1.0)

    def shadow(self, p, st, zc, color):
        p.poly(_circle(st[X] + 1.0, st[Y] + 1.0, zc + 0.01, self.spec.dims[1], rx=self.spec.dims[0] / 2,
                       yaw=st[YAW]), color)

    def draw(self, p, st, ctx):
        o = self.spec
        length, r, _ = o.dims
        r = r * (1.0 - 0.5 * st[SQUASH])
        x, y, z = st[X], st[Y], ctx.scene.counter_z + st[Z]
        ax = _rz(st[YAW]) @ np.array([1.0, 0.0, 0.0])
        ax = ax * np.cos(st[TILT]) - np.array([0.0, 0.0, np.sin(st[TILT])])  # droops when held weakly
        cuts = int(self.own(st, "cuts"))
        start = np.array([x, y, z + r]) - 0.5 * length * ax
        edges = [0.0] + [b + 0.5 for b in range(8) if cuts & (1 << b)] + [8.0]
        for k in range(len(edges) - 1):  # slices drift apart
            b0, b1, sh = edges[k], edges[k + 1], 1.6 * k
            a0 = start + ax * (b0 / 8 * length + sh)
            a1 = start + ax * (b1 / 8 * length + sh)
            p.line(a0, a1, 2 * r, o.color)
            p.line(a0 + np.array([0, 0, 0.5 * r]), a1 + np.array([0, 0, 0.5 * r]), 0.5 * r, _shade(o.color, 1.5))
            if b0 > 0:  # pale flesh where the piece was cut off
                p.poly(_circle(*a0[:2], a0[2] + 0.3 * r, 0.85 * r, n=10), o.color2)
        self.draw_notch(p, st, ctx, z + 2 * r)


class _Box(WorldObject):
    """A box-shaped object: dims are (length, width, height)."""

    @staticmethod
    def height_of(dims):
        return dims[2]

    @staticmethod
    def footprint_of(dims):
        return dims[0] / 2


class Board(_Box):
    kind = "board"

    def can_hold(self, hand):
        return False

    def shadow(self, p, st, zc, color):
        p.poly(_circle(st[X] + 1.0, st[Y] + 1.0, zc + 0.01, self.spec.dims[1] / 2, rx=self.spec.dims[0] / 2,
                       yaw=st[YAW]), color)

    def draw(self, p, st, ctx):
        o, d = self.spec, self.spec.dims
        z = ctx.scene.counter_z + st[Z]
        p.box(st[X], st[Y], z, d[0], d[1], d[2], st[YAW], _shade(o.color, 0.7), o.color)
        p.box(st[X], st[Y], z + d[2], d[0] * 0.8, d[1] * 0.06, 0.05, st[YAW], _shade(o.color, 0.85),
              _shade(o.color, 0.85))


class Jar(WorldObject):
    """A jar whose lid turns while a free hand grips it, at a rate set by the EMG twist."""

    kind = "jar"
    FIELDS = ("lid",)
    curl_range = (0.22, 0.82)

    @staticmethod
    def height_of(dims):
        return dims[1] + dims[2]

    def step(self, st, ctx):
        super().step(st, ctx)
        top = ctx.scene.counter_z + st[Z] + self.spec.height
        for h, hand in enumerate(ctx.hands):
            if int(st[HELD]) == h or hand.force < TWIST_GRIP or ctx.tools[h] is not None:
                continue
            d = np.hypot(hand.grip[0] - st[X], hand.grip[1] - st[Y])
            if d < self.spec.dims[0] + 3.0 and top - 5.0 < hand.grip[2] < top + 6.0:
                grip = min(1.0, (hand.force - TWIST_GRIP) / 0.3 + 0.3)  # a weak grip slides on the lid
                lid = self.own(st, "lid") + TWIST_RATE * hand.twist * grip * ctx.dt
                self.set_own(st, "lid", float(np.clip(lid, 0.0, LID_MAX)))

    def draw(self, p, st, ctx):
        o = self.spec
        r, hh, lid = o.dims
        x, y, z = st[X], st[Y], ctx.scene.counter_z + st[Z]
        off = self.tilt_offset(st, hh)
        p.cylinder(x, y, z, z + hh, r, _shade(o.color, 0.8), _shade(o.color, 0.9), top_offset=off)
        prog = self.own(st, "lid")
        opened = float(np.clip((prog - LID_OPEN) / (LID_MAX - LID_OPEN), 0.0, 1.0))
        lz = z + hh + 5.0 * opened
        lx, ly = x + off[0] + 7.0 * opened, y + off[1]
        p.cylinder(lx, ly, lz, lz + lid, 1.05 * r, _shade(o.color2, 0.7), o.color2)
        ang = prog + st[YAW]  # the lid turns with the jar, and on it
        bar = np.array([np.cos(ang), np.sin(ang), 0.0]) * r
        c = np.array([lx, ly, lz + lid])
        p.line(c - bar, c + bar, 0.6 * r, (245, 245, 240))
        p.line(c + 0.5 * bar, c + 1.4 * bar, 0.7 * r, (30, 30, 30))  # a tab marks the lid's turn


class Sponge(_Box):
    """Soft: squashes flat and spreads under the grip force, and springs back when let go."""

    kind = "sponge"
    soft = 0.55
    reach_cm = 7.0
    curl_range = (0.2, 1.0)  # a fist squeezes a sponge just fine


    def shadow(self, p, st, zc, color):
        p.poly(_circle(st[X] + 1.0, st[Y] + 1.0, zc + 0.01, self.spec.dims[1] / 2, rx=self.spec.dims[0] / 2,
                       yaw=st[YAW]), color)

    def draw(self, p, st, ctx):
        o = self.spec
        L, W, H = o.dims
        sq = float(np.clip(st[SQUASH], 0.0, 0.8))
        x, y, z = st[X], st[Y], ctx.scene.counter_z + st[Z]
        h = H * (1.0 - sq)
        spread = 1.0 + 0.5 * sq  # flattened sponge bulges sideways
        p.box(x, y, z, L * spread, W * spread, 0.5 * h, st[YAW], _shade(o.color2, 0.8), o.color2)
        p.box(x, y, z + 0.5 * h, L * spread, W * spread, 0.5 * h, st[YAW], _shade(o.color, 0.8 - 0.4 * sq),
              _shade(o.color, 1.0 - 0.45 * sq))  # squeezed wet foam darkens


class Pitcher(WorldObject):
    """Tilts with the hand's roll (plus droop); pours into the glass when tilted over it."""

    kind = "pitcher"
    FIELDS = ("water",)
    curl_range = (0.22, 0.8)

    def step(self, st, ctx):
        super().step(st, ctx)
        h = int(st[HELD])
        if h < 0:
            return
        st[TILT] += ctx.hands[h].roll
        gl = ctx.find("glass")
        if gl is None:
            return
        glass, g = gl
        tilt = abs(st[TILT])
        if _pouring(st, g, tilt, self.own(st, "water"), glass.own(g, "fill")):
            amount = min(POUR_RATE * (tilt - POUR_ON) * ctx.dt, self.own(st, "water"), 1.0 - glass.own(g, "fill"))
            glass.set_own(g, "fill", glass.own(g, "fill") + amount)
            self.set_own(st, "water", self.own(st, "water") - amount)

    def draw(self, p, st, ctx):
        o = self.spec
        r, hh, _ = o.dims
        x, y, z, tilt = st[X], st[Y], ctx.scene.counter_z + st[Z], st[TILT]
        side = _rz(st[YAW]) @ np.array([1.0, 0.0, 0.0])
        off = hh * np.sin(tilt) * side[:2]
        top_z = z + hh * np.cos(tilt)
        p.cylinder(x, y, z, top_z, r, _shade(o.color, 0.75), o.color, top_offset=off)
        water = self.own(st, "water")
        if water > 0.05:
            p.poly(_circle(x + off[0], y + off[1], top_z, 0.8 * r), (70, 120, 200))
        hpos = np.array([x, y, z + 0.6 * hh]) - side * r
        p.line(hpos, hpos - side * 4.0, 2.0, _shade(o.color, 0.6))
        gl = ctx.find("glass")
        if gl is not None and int(st[HELD]) >= 0:
            glass, g = gl
            if _pouring(st, g, abs(tilt), water, glass.own(g, "fill")):
                lip = np.array([x + off[0], y + off[1], top_z]) + np.sign(tilt) * r * np.append(side[:2], 0.0)
                p.line(lip, np.array([g[X], g[Y], ctx.scene.counter_z + g[Z] + glass.spec.dims[1]]), 1.3,
                       (80, 140, 220))


class Glass(WorldObject):
    kind = "glass"
    FIELDS = ("fill",)
    reach_cm = 7.0

    def draw(self, p, st, ctx):
        o = self.spec
        r, hh, _ = o.dims
        x, y, z = st[X], st[Y], ctx.scene.counter_z + st[Z]
        off = self.tilt_offset(st, hh)
        p.cylinder(x, y, z, z + hh, r, o.color, _shade(o.color, 1.08), top_offset=off)
        fill = self.own(st, "fill")
        if fill > 0.02:
            p.cylinder(x, y, z + 0.5, z + 0.5 + fill * 0.9 * hh, 0.85 * r, (60, 110, 205), (90, 145, 225),
                       top_offset=off * fill)
        px, zz = p.cam.project(_circle(x + off[0], y + off[1], z + hh, r))
        if (zz > 2).all():
            cv2.polylines(p.img, [_fix(px).reshape(-1, 1, 2)], True, _shade(o.color, 0.6), 1, cv2.LINE_AA, _SHIFT)


OBJECT_CLASSES: dict[str, type[WorldObject]] = {
    c.kind: c for c in (Pan, Plate, Potato, Cucumber, Board, Jar, Sponge, Pitcher, Glass)}
OBJECT_KINDS = tuple(OBJECT_CLASSES)


def _pouring(pitcher: np.ndarray, glass: np.ndarray, tilt: float, water: float, fill: float) -> bool:
    d = np.hypot(pitcher[X] - glass[X], pitcher[Y] - glass[Y])
    return tilt > POUR_ON and d < 16.0 and water > 0.0 and fill < 1.0


def _knife_point(hand: HandReading) -> np.ndarray:
    """Middle of a knife/peeler blade held in the fist: ahead of the grip point, pointing down."""
    return hand.grip + 5.0 * _blade_dir(hand)


def _blade_dir(hand: HandReading) -> np.ndarray:
    fwd = np.array([-np.sin(hand.yaw), np.cos(hand.yaw), 0.0])
    d = fwd - 0.9 * np.array([0.0, 0.0, 1.0])
    return d / np.linalg.norm(d)


# ----------------------------------------------------------------------------------------------
# Painting primitives
# ----------------------------------------------------------------------------------------------
_SHIFT = 4
_ONE = 1 << _SHIFT


def _fix(px: np.ndarray) -> np.ndarray:
    return np.round(px * _ONE).astype(np.int32)


def _fill(img, px, color):
    hull = cv2.convexHull(_fix(px).reshape(-1, 1, 2))
    cv2.fillConvexPoly(img, hull, color, lineType=cv2.LINE_AA, shift=_SHIFT)


def _shade(color, k: float):
    return tuple(int(min(255, max(0, c * k))) for c in color)


def _circle(cx, cy, z, r, n=18, rx=None, yaw=0.0):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rx = r if rx is None else rx
    pts = np.stack([rx * np.cos(a), r * np.sin(a), np.zeros(n)], -1) @ _rz(yaw).T
    return pts + np.array([cx, cy, z])


class _Painter:
    """Draws into one frame with one camera; skips primitives that reach behind the camera."""

    def __init__(self, img: np.ndarray, cam: Camera):
        self.img, self.cam = img, cam

    def poly(self, pts3, color) -> bool:
        px, z = self.cam.project(pts3)
        if (z < 2.0).any():
            return False
        _fill(self.img, px, color)
        return True

    def cylinder(self, cx, cy, z0, z1, r, side, top, yaw=0.0, top_offset=(0.0, 0.0), rx=None):
        bottom = _circle(cx, cy, z0, r, rx=rx, yaw=yaw)
        topc = _circle(cx + top_offset[0], cy + top_offset[1], z1, r, rx=rx, yaw=yaw)
        if self.poly(np.concatenate([bottom, topc]), side):
            self.poly(topc, top)

    def box(self, cx, cy, z0, length, width, height, yaw, side, top):
        hx, hy = length / 2, width / 2
        base = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]]) @ _rz(yaw)[:2, :2].T + np.array([cx, cy])
        lo = np.concatenate([base, np.full((4, 1), z0)], 1)
        hi = np.concatenate([base, np.full((4, 1), z0 + height)], 1)
        if self.poly(np.concatenate([lo, hi]), side):
            self.poly(hi, top)

    def line(self, a, b, width_cm, color) -> bool:
        px, z = self.cam.project(np.stack([a, b]))
        if (z < 2.0).any():
            return False
        th = max(1, int(round(width_cm * self.cam.focal / z.mean())))
        p = _fix(px)
        cv2.line(self.img, tuple(p[0]), tuple(p[1]), color, th, lineType=cv2.LINE_AA, shift=_SHIFT)
        return True

    def polyline(self, pts3, width_cm, color) -> bool:
        px, z = self.cam.project(pts3)
        if (z < 2.0).any():
            return False
        th = max(1, int(round(width_cm * self.cam.focal / z.mean())))
        cv2.polylines(self.img, [_fix(px).reshape(-1, 1, 2)], False, color, th, lineType=cv2.LINE_AA, shift=_SHIFT)
        return True


def _draw_background(img: np.ndarray, scene: Scene, cam: Camera) -> None:
    w, h = scene.image_size
    img[:] = scene.cabinet
    s = Scene.TEX_PX_PER_CM
    x0, zc = scene.TEX_X[0], scene.counter_z
    ex, ey, ez = np.eye(3)
    if scene.wall_texture is not None:  # vertical plane y = wall_y, texture row 0 at the top
        th = scene.wall_texture.shape[0] / s
        H = cam.plane_homography(np.array([x0, scene.wall_y, zc + th]), ex, -ez)
        H = H @ np.array([[1 / s, 0, 0], [0, 1 / s, 0], [0, 0, 1.0]])
        cv2.warpPerspective(scene.wall_texture, H, (w, h), dst=img, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_TRANSPARENT)
    if scene.counter_texture is not None:  # horizontal plane z = counter_z, texture row 0 at the far edge
        H = cam.plane_homography(np.array([x0, scene.wall_y, zc]), ex, -ey)
        H = H @ np.array([[1 / s, 0, 0], [0, 1 / s, 0], [0, 0, 1.0]])
        cv2.warpPerspective(scene.counter_texture, H, (w, h), dst=img, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_TRANSPARENT)




# ----------------------------------------------------------------------------------------------
# Dynamics
# ----------------------------------------------------------------------------------------------
def _context(scene: Scene, state: np.ndarray, hands: list[HandReading], dt: float) -> StepContext:
    seg_i = int(state[0])
    objs = scene.objects(seg_i)
    return StepContext(scene, hands, (None, scene.segments[seg_i].tool_right), dt, objs,
                       [object_state(state, i) for i in range(len(objs))])


def step(scene: Scene, state: np.ndarray, frame: Mapping[str, np.ndarray], t: float, dt: float,
         hands: list[HandReading] | None = None) -> np.ndarray:
    """Advance the world to time ``t`` (seconds since start) under this frame's raw actions; ``dt`` is
    the time since the previous rendered frame (0 for the first). ``hands``: ``read_hands(frame)`` if
    already computed."""
    s = np.array(state, dtype=np.float64, copy=True)
    seg_i = scene.segment_at(t)
    if int(s[0]) != seg_i:  # the layout changes between activities (in the idle gap)
        s = scene.initial_state(seg_i)
    hands = read_hands(frame) if hands is None else hands
    ctx = _context(scene, s, hands, dt)
    zc = scene.counter_z
    # take hold: a gripping hand (no tool, holding nothing yet) takes the nearest object it can hold
    for h, hand in enumerate(hands):
        if ctx.tools[h] is not None or hand.force < GRASP_ON:
            continue
        if any(int(st[HELD]) == h for st in ctx.states):
            continue
        best, best_d = -1, np.inf
        for i, (obj, st) in enumerate(zip(ctx.objects, ctx.states)):
            if int(st[HELD]) >= 0 or not obj.can_hold(hand):
                continue
            d = float(np.linalg.norm(hand.grip - obj.grasp_point(st, zc)))
            if d < obj.reach_cm and d < best_d:
                best, best_d = i, d
        if best >= 0:
            ctx.objects[best].take(ctx.states[best], h, hand)
    for obj, st in zip(ctx.objects, ctx.states):
        obj.step(st, ctx)
    return s


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------
def _draw_hand(p: _Painter, scene: Scene, hand: HandReading, tool: str | None) -> None:
    # the pressing hand blanches with the grip force; the forearm's muscles bulge with EMG effort
    skin = _mix(_shade(scene.skin, RELAXED_SHADE), PALE, float(np.sqrt(np.clip(hand.force / FORCE_CAP, 0.0, 1.0))))
    dark = _shade(scene.skin, 0.6)
    f = p.cam.focal
    e, c = hand.elbow, hand.carpus
    (_, ze), (_, zcp) = p.cam.project(e[None]), p.cam.project(c[None])
    if zcp[0] < 3.0:
        return
    if ze[0] < 3.0:  # clip the elbow end to stay in front of the camera
        a = (3.0 - zcp[0]) / (ze[0] - zcp[0])
        e = c + 0.95 * a * (e - c)
    bulge = BULGE_CM * float(np.sqrt(np.clip(hand.effort / BULGE_EFFORT, 0.0, 1.5)))  # first effort shows most
    p.line(e, c, FOREARM_CM + bulge, scene.sleeve)
    wrist = c + 0.45 * (e - c)
    p.line(wrist, c, FOREARM_CM * 0.8 + bulge, _shade(scene.skin, 0.92))  # bare wrist below the sleeve
    seg, tips = hand.seg, kin.fingertips(hand.seg - hand.carpus) + hand.carpus
    palm = np.concatenate([[c], seg[[1, 4, 16]], seg[kin.KNUCKLES]])
    if not p.poly(palm, skin):
        return
    chains = [np.stack([seg[1], seg[2], seg[3], tips[0]])]
    chains += [np.stack([seg[fi[1]], seg[fi[2]], seg[fi[3]], tips[k + 1]]) for k, fi in enumerate(kin.FINGERS)]
    px, zz = p.cam.project(np.concatenate(chains))
    if (zz < 2.0).any():
        return
    z = float(zz.mean())
    lines = [_fix(q).reshape(-1, 1, 2) for q in np.split(px, 5)]
    th = max(1, int(round(FINGER_CM * f / z)))
    # outline first so neighbouring fingers stay distinguishable
    cv2.polylines(p.img, lines, False, dark, th + 2, lineType=cv2.LINE_AA, shift=_SHIFT)
    cv2.polylines(p.img, lines, False, skin, th, lineType=cv2.LINE_AA, shift=_SHIFT)
    if tool is not None:
        d = _blade_dir(hand)
        g = hand.grip
        if tool == "knife":
            p.line(g - 3.5 * d, g + 1.0 * d, 2.0, (35, 35, 35))
            p.line(g + 1.0 * d, g + 11.0 * d, 1.6, (205, 210, 215))
        else:
            p.line(g - 3.0 * d, g + 1.5 * d, 2.0, (220, 180, 40))
            p.line(g + 1.5 * d, g + 6.5 * d, 1.6, (190, 195, 200))


def _mix(a, b, w: float):
    return tuple(int(round((1 - w) * x + w * y)) for x, y in zip(a, b))


def draw(scene: Scene, state: np.ndarray, frame: Mapping[str, np.ndarray],
         hands: list[HandReading] | None = None) -> np.ndarray:
    """One native-resolution RGB frame ``(H, W, 3)`` uint8 from the state and this frame's raw actions."""
    w, h = scene.image_size
    img = np.empty((h, w, 3), dtype=np.uint8)
    cam = camera_from_body(frame["body_pose"], scene)
    _draw_background(img, scene, cam)
    p = _Painter(img, cam)
    hands = read_hands(frame) if hands is None else hands
    ctx = _context(scene, np.asarray(state), hands, 0.0)
    zc = scene.counter_z
    for obj, st in zip(ctx.objects, ctx.states):  # shadows stay on the counter when objects are lifted
        obj.shadow(p, st, zc, scene.shadow)

    def depth(i):
        st = ctx.states[i]
        return -cam.project(np.array([[st[X], st[Y], zc + st[Z]]]))[1][0]

    order = sorted(range(len(ctx.objects)),
                   key=lambda i: (int(ctx.states[i][HELD]) >= 0, ctx.objects[i].kind != "board", depth(i)))
    for i in order:
        ctx.objects[i].draw(p, ctx.states[i], ctx)
    zs = [cam.project(hd.carpus[None])[1][0] for hd in hands]
    for hi in sorted(range(2), key=lambda i: -zs[i]):
        _draw_hand(p, scene, hands[hi], ctx.tools[hi])
    return img


# ----------------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------------
VALID_RANGE: dict[str, tuple[float, float]] = {
    "hand_pose": (-40.0, 40.0),  # cm from the carpus: a hand is ~20 cm long
    "body_pose": (-250.0, 250.0),  # cm from the centre of mass
    "emg": (0.0, float(schema.EMG_RANGE[1])),  # an envelope of |emg|
    "hand_force": (0.0, 1023.0),  # 10-bit tactile ADC
}
"""Raw values the world can render; actions outside are clipped (with the reason logged)."""


def check_actions(actions: Mapping[str, np.ndarray], steps: int | None = None,
                  where: str = "oracle actions") -> dict[str, np.ndarray]:
    """Validate raw clip actions ``{name: (T, *shape)}`` (all four modalities, finite, ``steps`` steps
    when given) and clip them to the world's ``VALID_RANGE``; returns float32 copies. Raises
    :class:`ActionInputError` naming the modality and the expected shape."""
    missing = [n for n in schema.MODALITY_NAMES if n not in actions]
    if missing:
        raise ActionInputError(f"{where}: the oracle needs all four modalities in raw units; missing {missing}")
    for n in schema.MODALITY_NAMES:
        a = np.asarray(actions[n])
        shape = schema.MODALITIES[n].shape
        want = steps if steps is not None else (a.shape[0] if a.ndim else "T")
        if a.ndim != len(shape) + 1 or tuple(a.shape[1:]) != shape or (steps is not None and a.shape[0] != steps):
            raise ActionInputError(f"{where}: {n} must have shape ({want}, {', '.join(map(str, shape))}) "
                                   f"(one step per frame), got {a.shape}")
    checked = schema.check_action_arrays({n: actions[n] for n in schema.MODALITY_NAMES}, where=where,
                                         steps=steps, error=ActionInputError)
    if next(iter(checked.values())).shape[0] < 1:
        raise ActionInputError(f"{where}: need at least one step, got 0")
    for n, (lo, hi) in VALID_RANGE.items():
        a = checked[n]
        bad = (a < lo) | (a > hi)
        if bad.any():
            logger.warning("%s: %d of %d %s values outside the world's range [%g, %g] (min %.4g, max %.4g) "
                           "clipped", where, int(bad.sum()), a.size, n, lo, hi, float(a.min()), float(a.max()))
            checked[n] = np.clip(a, lo, hi)
    return checked


def iter_world(scene: Scene, initial_state: np.ndarray, actions: Mapping[str, np.ndarray],
               frame_times: Sequence[float], render_frames: bool = True):
    """Roll the world forward one frame at a time, yielding ``(state, frame)``: frame 0 is drawn from
    ``initial_state`` (the state *at* that frame); each later frame first steps the state by its time
    difference. ``frame`` is ``(H, W, 3)`` uint8, or None when ``render_frames`` is false."""
    times = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    actions = check_actions(actions, steps=len(times))
    T = len(times)
    state = np.asarray(initial_state, dtype=np.float64)
    if state.shape != (len(STATE_FIELDS),):
        raise ActionInputError(f"initial_state must have shape ({len(STATE_FIELDS)},), got {state.shape}")
    for k in range(T):
        frame = {n: actions[n][k] for n in schema.MODALITY_NAMES}
        hands = read_hands(frame)
        if k > 0:
            state = step(scene, state, frame, float(times[k]), float(times[k] - times[k - 1]), hands)
        yield state, (draw(scene, state, frame, hands) if render_frames else None)


def simulate(scene: Scene, initial_state: np.ndarray, actions: Mapping[str, np.ndarray],
             frame_times: Sequence[float], render_frames: bool = True):
    """:func:`iter_world` collected: ``(frames (T, H, W, 3) uint8 or None, states (T, len(STATE_FIELDS)))``."""
    states, frames = [], []
    for st, fr in iter_world(scene, initial_state, actions, frame_times, render_frames):
        states.append(st)
        frames.append(fr)
    w, h = scene.image_size
    out = (np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)) if render_frames else None
    return out, np.stack(states) if states else np.zeros((0, len(STATE_FIELDS)))


def render(scene: Scene, initial_state: np.ndarray, actions: Mapping[str, np.ndarray],
           frame_times: Sequence[float]) -> np.ndarray:
    """The oracle: native-resolution frames ``(T, H, W, 3)`` uint8 the world shows under raw clip
    ``actions`` (``{name: (T, *schema shape)}``, raw units) at ``frame_times`` (seconds since the
    recording start), starting from ``initial_state`` (the world state at the first frame)."""
    return simulate(scene, initial_state, actions, frame_times, render_frames=True)[0]
