"""The synthetic egocentric kitchen: scene description, world state, dynamics and the renderer.

This module *is* the oracle. ``render(scene, initial_state, actions, frame_times)`` turns raw clip
actions (ActionSense units, the same values ``mmsim preprocess`` puts in clips before min-max
scaling) into world-video frames, and the recorded video of every synthetic recording is produced by
exactly this code from the true signals at the frame times. Each modality shapes the picture through
a channel the others do not carry:

=============  ==============================================================================
body_pose      Head (vs Neck and the shoulder line) places and aims the head-mounted camera;
               the Hand segments place the hands (and anything they hold); forearms drawn.
hand_pose      finger configuration drawn (open vs closed hand), hand heading turns a held
               object, hand roll tilts a held pitcher (pouring).
hand_force     grasp (force above ``GRASP_ON`` near a graspable object) / release, squash of a
               held sponge or potato, scrub rate of the pan's / plate's dirt, knife cuts (threshold with re-arm),
               peeling rate, grip on the jar lid.
emg            lift: how high a held object follows the hand (``effort`` vs the object's weight);
               twist: jar-lid rotation rate (flexor minus extensor channels).
=============  ==============================================================================

World state (per video frame, see ``STATE_FIELDS``) holds only what integrates over time: which
segment (scene layout) is active and, per object, position, heading, who holds it and the grasp
offsets, plus one progress value (dirt left, peel fraction, cut bitmask, lid angle, water level).
Given the state at any frame and the actions from there on, the rest of the video follows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import cv2
import numpy as np

from mmsim_core import schema
from mmsim_core.errors import ActionInputError
from mmsim_core.synth import kinematics as kin

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
GRASP_ON, GRASP_OFF = 0.30, 0.16  # grip force hysteresis for holding an object
CUT_ON, CUT_REARM = 0.62, 0.35  # knife: a cut needs a force peak, the next one a release first
PEEL_ON, PEEL_RATE = 0.30, 0.55  # peel fraction per second per unit force above PEEL_ON
SCRUB_RATE = 0.3  # dirt removed per second per unit grip force on the sponge
TWIST_GRIP = 0.30
TWIST_RATE = 5.0  # lid radians per second per unit twist
LID_OPEN = 3.0 * np.pi  # lid comes off after 1.5 turns
LID_MAX = 4.0 * np.pi
POUR_ON = np.deg2rad(35.0)
POUR_RATE = 0.9  # glass fill per second per radian of tilt beyond POUR_ON
EMG_BASE = 5.0
"""Resting EMG envelope (raw units); ``effort`` is the mean envelope above it."""
EMG_TWIST_SCALE = 32.0
"""Flexor (ch 0-3) minus extensor (ch 4-7) envelope that counts as a full-speed twist."""
LIFT_RAMP = 18.0  # effort above the object's weight over which the lift gain goes 0 -> 1

OBJECT_KINDS = ("pan", "plate", "potato", "cucumber", "board", "jar", "sponge", "pitcher", "glass")
TOOLS = (None, "knife", "peeler")
MAX_OBJECTS = 3

OBJECT_FIELDS = ("x", "y", "z", "yaw", "held", "off_x", "off_y", "grasp_hand_z", "grasp_obj_z", "yaw_off",
                 "progress", "aux")
STATE_FIELDS = ("segment",) + tuple(f"obj{i}.{f}" for i in range(MAX_OBJECTS) for f in OBJECT_FIELDS)
NF = len(OBJECT_FIELDS)
_F = {name: i for i, name in enumerate(OBJECT_FIELDS)}


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
    """EMG effort (raw envelope units above rest) needed before a held object starts to rise."""
    graspable: bool = True
    progress0: float = 0.0
    aux0: float = 0.0

    def __post_init__(self):
        if self.kind not in OBJECT_KINDS:
            raise ValueError(f"kind must be one of {list(OBJECT_KINDS)}, got {self.kind!r}")
        self.dims = tuple(float(d) for d in self.dims)
        self.color = tuple(int(c) for c in self.color)
        self.color2 = tuple(int(c) for c in self.color2)

    @property
    def height(self) -> float:
        k, d = self.kind, self.dims
        return {"pan": d[1], "plate": d[1], "potato": d[2], "cucumber": 2 * d[1], "board": d[2],
                "jar": d[1] + d[2], "sponge": d[2], "pitcher": d[1], "glass": d[1]}[k]

    @property
    def footprint(self) -> float:
        """Rough radius on the counter (cm), for shadows and reach."""
        k, d = self.kind, self.dims
        return {"pan": d[0], "plate": d[0], "potato": d[0], "cucumber": d[0] / 2, "board": d[0] / 2,
                "jar": d[0], "sponge": d[0] / 2, "pitcher": d[0], "glass": d[0]}[k]


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

    def initial_state(self, segment: int) -> np.ndarray:
        """State at the moment segment ``segment``'s layout appears (nothing held)."""
        s = np.zeros(len(STATE_FIELDS), dtype=np.float64)
        s[0] = segment
        for i in range(MAX_OBJECTS):
            s[1 + i * NF + _F["held"]] = -1
        for i, o in enumerate(self.segments[segment].objects):
            o_state = s[1 + i * NF: 1 + (i + 1) * NF]
            o_state[_F["x"]], o_state[_F["y"]], o_state[_F["z"]], o_state[_F["yaw"]] = o.x, o.y, o.z_rest, o.yaw
            o_state[_F["progress"]], o_state[_F["aux"]] = o.progress0, o.aux0
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
            force=float(min(tac.mean() / FORCE_NORM, 1.5)), effort=float(env.mean() - EMG_BASE),
            twist=float((env[:4].mean() - env[4:].mean()) / EMG_TWIST_SCALE)))
    return out


def lift_gain(effort: float, weight: float) -> float:
    return float(np.clip((effort - weight) / LIFT_RAMP, 0.0, 1.0))


# ----------------------------------------------------------------------------------------------
# Dynamics
# ----------------------------------------------------------------------------------------------
def _grasp_point(o: ObjectSpec, st: np.ndarray, zc: float) -> np.ndarray:
    x, y, z, yaw = st[_F["x"]], st[_F["y"]], zc + st[_F["z"]], st[_F["yaw"]]
    if o.kind == "pan":  # the handle end
        r, _, hl = o.dims
        d = _rz(yaw) @ np.array([-(r + 0.7 * hl), 0.0, 0.0])
        return np.array([x + d[0], y + d[1], z + o.dims[1]])
    return np.array([x, y, z + 0.55 * o.height])


def _reach(o: ObjectSpec) -> float:
    return 7.0 if o.kind in ("pan", "potato", "sponge", "glass", "cucumber") else 9.0


def step(scene: Scene, state: np.ndarray, frame: Mapping[str, np.ndarray], t: float, dt: float,
         hands: list[HandReading] | None = None) -> np.ndarray:
    """Advance the world to time ``t`` (seconds since start) under this frame's raw actions; ``dt`` is
    the time since the previous rendered frame (0 for the first). ``hands``: ``read_hands(frame)`` if
    already computed."""
    s = np.array(state, dtype=np.float64, copy=True)
    seg_i = scene.segment_at(t)
    if int(s[0]) != seg_i:  # the layout changes between activities (in the idle gap)
        s = scene.initial_state(seg_i)
    seg = scene.segments[seg_i]
    objs = seg.objects
    hands = read_hands(frame) if hands is None else hands
    tools = (None, seg.tool_right)

    # release, then grasp (hysteresis on grip force; a hand holding a tool never grasps)
    for i, o in enumerate(objs):
        st = object_state(s, i)
        h = int(st[_F["held"]])
        if h >= 0 and hands[h].force < GRASP_OFF:
            st[_F["held"]] = -1
            st[_F["z"]] = o.z_rest
    for h, hand in enumerate(hands):
        if tools[h] is not None or hand.force < GRASP_ON:
            continue
        if any(int(object_state(s, i)[_F["held"]]) == h for i in range(len(objs))):
            continue
        best, best_d = -1, np.inf
        for i, o in enumerate(objs):
            st = object_state(s, i)
            if not o.graspable or int(st[_F["held"]]) >= 0:
                continue
            d = float(np.linalg.norm(hand.grip - _grasp_point(o, st, scene.counter_z)))
            if d < _reach(o) and d < best_d:
                best, best_d = i, d
        if best >= 0:
            st = object_state(s, best)
            st[_F["held"]] = h
            st[_F["off_x"]], st[_F["off_y"]] = st[_F["x"]] - hand.grip[0], st[_F["y"]] - hand.grip[1]
            st[_F["grasp_hand_z"]], st[_F["grasp_obj_z"]] = hand.grip[2], st[_F["z"]]
            st[_F["yaw_off"]] = st[_F["yaw"]] - hand.yaw

    # held objects follow the hand in the plane; they rise with it as far as EMG effort allows
    for i, o in enumerate(objs):
        st = object_state(s, i)
        h = int(st[_F["held"]])
        if h < 0:
            continue
        hand = hands[h]
        st[_F["x"]], st[_F["y"]] = hand.grip[0] + st[_F["off_x"]], hand.grip[1] + st[_F["off_y"]]
        rise = max(0.0, hand.grip[2] - st[_F["grasp_hand_z"]])
        st[_F["z"]] = st[_F["grasp_obj_z"]] + rise * lift_gain(hand.effort, o.weight)
        st[_F["yaw"]] = hand.yaw + st[_F["yaw_off"]]

    # tool and contact effects
    kinds = [o.kind for o in objs]
    zc = scene.counter_z
    for i, o in enumerate(objs):
        st = object_state(s, i)
        if o.kind in ("pan", "plate") and "sponge" in kinds:
            j = kinds.index("sponge")
            sp = object_state(s, j)
            h = int(sp[_F["held"]])
            if h >= 0:
                d = np.hypot(sp[_F["x"]] - st[_F["x"]], sp[_F["y"]] - st[_F["y"]])
                if d < o.dims[0] - 2.0 and sp[_F["z"]] < st[_F["z"]] + o.height + 3.0:
                    st[_F["progress"]] = max(0.0, st[_F["progress"]] - SCRUB_RATE * hands[h].force * dt)
        if o.kind in ("cucumber", "potato") and seg.tool_right == "knife":
            hand = hands[1]
            c = _knife_point(hand)
            L = o.dims[0] if o.kind == "cucumber" else 2 * o.dims[0]
            ax = _rz(st[_F["yaw"]]) @ np.array([1.0, 0.0, 0.0])
            rel = c[:2] - (np.array([st[_F["x"]], st[_F["y"]]]) - 0.5 * L * ax[:2])
            u = float(rel @ ax[:2]) / L
            perp = abs(float(rel @ np.array([-ax[1], ax[0]])))
            contact = 0.0 <= u < 1.0 and perp < 4.5 and c[2] < zc + st[_F["z"]] + o.height + 4.0
            if hand.force < CUT_REARM:
                st[_F["aux"]] = 1.0
            elif contact and hand.force > CUT_ON and st[_F["aux"]] > 0.5:
                st[_F["progress"]] = float(int(st[_F["progress"]]) | (1 << min(int(u * 8), 7)))
                st[_F["aux"]] = 0.0
        if o.kind == "potato" and seg.tool_right == "peeler":
            hand = hands[1]
            c = _knife_point(hand)
            centre = np.array([st[_F["x"]], st[_F["y"]], zc + st[_F["z"]] + 0.5 * o.height])
            if np.linalg.norm(c - centre) < 9.0 and hand.force > PEEL_ON:
                st[_F["progress"]] = min(1.0, st[_F["progress"]] + PEEL_RATE * (hand.force - PEEL_ON) * dt)
        if o.kind == "jar":
            top = zc + st[_F["z"]] + o.height
            for h, hand in enumerate(hands):
                if int(st[_F["held"]]) == h or hand.force < TWIST_GRIP or tools[h] is not None:
                    continue
                d = np.hypot(hand.grip[0] - st[_F["x"]], hand.grip[1] - st[_F["y"]])
                if d < o.dims[0] + 3.0 and top - 5.0 < hand.grip[2] < top + 6.0:
                    st[_F["progress"]] = float(np.clip(st[_F["progress"]] + TWIST_RATE * hand.twist * dt,
                                                       0.0, LID_MAX))
        if o.kind == "pitcher" and "glass" in kinds:
            h = int(st[_F["held"]])
            if h >= 0:
                g = object_state(s, kinds.index("glass"))
                tilt = abs(hands[h].roll)
                if _pouring(st, g, tilt):
                    amount = min(POUR_RATE * (tilt - POUR_ON) * dt, st[_F["aux"]], 1.0 - g[_F["progress"]])
                    g[_F["progress"]] += amount
                    st[_F["aux"]] -= amount
    return s


def _pouring(pitcher: np.ndarray, glass: np.ndarray, tilt: float) -> bool:
    d = np.hypot(pitcher[_F["x"]] - glass[_F["x"]], pitcher[_F["y"]] - glass[_F["y"]])
    return tilt > POUR_ON and d < 16.0 and pitcher[_F["aux"]] > 0.0 and glass[_F["progress"]] < 1.0


def _knife_point(hand: HandReading) -> np.ndarray:
    """Middle of a knife/peeler blade held in the fist: ahead of the grip point, pointing down."""
    return hand.grip + 5.0 * _blade_dir(hand)


def _blade_dir(hand: HandReading) -> np.ndarray:
    fwd = np.array([-np.sin(hand.yaw), np.cos(hand.yaw), 0.0])
    d = fwd - 0.9 * np.array([0.0, 0.0, 1.0])
    return d / np.linalg.norm(d)


# ----------------------------------------------------------------------------------------------
# Drawing
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


def _draw_object(p: _Painter, scene: Scene, o: ObjectSpec, st: np.ndarray, hands: list[HandReading],
                 all_states: dict, tool: str | None) -> None:
    zc = scene.counter_z
    x, y, z, yaw, prog = st[_F["x"]], st[_F["y"]], zc + st[_F["z"]], st[_F["yaw"]], st[_F["progress"]]
    held = int(st[_F["held"]])
    d = o.dims
    if o.kind == "pan":
        r, depth, hl = d
        p.cylinder(x, y, z, z + depth, r, _shade(o.color, 0.7), o.color)
        p.poly(_circle(x, y, z + depth, 0.86 * r), o.color2)  # inside
        if prog > 0.01:  # dirt shrinks as it is scrubbed off
            p.poly(_circle(x, y, z + depth, 0.8 * r * np.sqrt(prog), n=14), (112, 78, 40))
        hd = _rz(yaw) @ np.array([-1.0, 0.0, 0.0])
        a = np.array([x, y, z + depth]) + r * hd
        p.line(a, a + hl * hd, 3.0, _shade(o.color, 0.5))
    elif o.kind == "plate":
        r, hh, _ = d
        p.cylinder(x, y, z, z + hh, r, _shade(o.color, 0.75), o.color)
        p.poly(_circle(x, y, z + hh, 0.68 * r), o.color2)
        if prog > 0.01:
            p.poly(_circle(x, y, z + hh, 0.6 * r * np.sqrt(prog), n=14), (140, 100, 50))
        mark = np.array([x, y, z + hh]) + _rz(yaw) @ np.array([0.84 * r, 0.0, 0.0])
        p.poly(_circle(mark[0], mark[1], mark[2], 0.12 * r, n=8), _shade(o.color2, 0.5))  # shows turning
    elif o.kind == "potato":
        a, b, hh = d
        sq = 1.0 - (0.12 * min(hands[held].force, 1.0) if held >= 0 else 0.0)
        peel = float(np.clip(prog, 0.0, 1.0)) if tool == "peeler" else 0.0  # with a knife: cut bitmask
        col = tuple(int(c) for c in (1 - peel) * np.array(o.color, float) + peel * np.array(o.color2, float))
        e1 = _circle(x, y, z + 0.35 * hh, b * sq, rx=a, yaw=yaw)
        e2 = _circle(x, y, z + 0.8 * hh, 0.75 * b * sq, rx=0.8 * a, yaw=yaw)
        p.poly(np.concatenate([e1, e2]), col)
        p.poly(_circle(x, y, z + hh, 0.35 * b, rx=0.45 * a, yaw=yaw, n=10), _shade(col, 1.15))
        if tool == "knife":
            ax, side = _rz(yaw)[:, 0], _rz(yaw)[:, 1]
            for k in range(8):
                if int(prog) & (1 << k):  # a pale cut across the potato at each slice
                    c = np.array([x, y, z + hh]) + ax * a * ((k + 0.5) / 4.0 - 1.0)
                    p.line(c - 0.8 * b * side, c + 0.8 * b * side, 0.7, o.color2)
    elif o.kind == "cucumber":
        length, r, _ = d
        ax = _rz(yaw) @ np.array([1.0, 0.0, 0.0])
        cuts = int(prog)
        start = np.array([x, y, z + r]) - 0.5 * length * ax
        edges = [0.0] + [b + 0.5 for b in range(8) if cuts & (1 << b)] + [8.0]
        pieces = [(edges[k], edges[k + 1], 1.6 * k) for k in range(len(edges) - 1)]  # slices drift apart
        for b0, b1, sh in pieces:
            a0 = start + ax * (b0 / 8 * length + sh)
            a1 = start + ax * (b1 / 8 * length + sh)
            p.line(a0, a1, 2 * r, o.color)
            p.line(a0 + np.array([0, 0, 0.5 * r]), a1 + np.array([0, 0, 0.5 * r]), 0.5 * r, _shade(o.color, 1.5))
            if b0 > 0:  # pale flesh where the piece was cut off
                p.poly(_circle(*a0[:2], a0[2] + 0.3 * r, 0.85 * r, n=10), o.color2)
    elif o.kind == "board":
        p.box(x, y, z, d[0], d[1], d[2], yaw, _shade(o.color, 0.7), o.color)
        p.box(x, y, z + d[2], d[0] * 0.8, d[1] * 0.06, 0.05, yaw, _shade(o.color, 0.85), _shade(o.color, 0.85))
    elif o.kind == "jar":
        r, hh, lid = d
        p.cylinder(x, y, z, z + hh, r, _shade(o.color, 0.8), _shade(o.color, 0.9))
        opened = float(np.clip((prog - LID_OPEN) / (LID_MAX - LID_OPEN), 0.0, 1.0))
        lz = z + hh + 5.0 * opened
        lx = x + 7.0 * opened
        p.cylinder(lx, y, lz, lz + lid, 1.05 * r, _shade(o.color2, 0.7), o.color2)
        ang = prog + yaw  # the lid turns with the jar, and on it
        bar = np.array([np.cos(ang), np.sin(ang), 0.0]) * r
        c = np.array([lx, y, lz + lid])
        p.line(c - bar, c + bar, 0.5 * r, (245, 245, 240))
        p.line(c + 0.6 * bar, c + 1.35 * bar, 0.55 * r, (30, 30, 30))  # a tab marks the lid's turn
    elif o.kind == "sponge":
        L, W, H = d
        sq = 1.0 - (0.45 * min(hands[held].force, 1.2) if held >= 0 else 0.0)
        p.box(x, y, z, L, W * (0.6 + 0.4 * sq), H * sq * 0.5, yaw, _shade(o.color2, 0.8), o.color2)
        p.box(x, y, z + H * sq * 0.5, L, W * (0.6 + 0.4 * sq), H * sq * 0.5, yaw, _shade(o.color, 0.8), o.color)
    elif o.kind == "pitcher":
        r, hh, _ = d
        tilt = hands[held].roll if held >= 0 else 0.0
        side = _rz(yaw) @ np.array([1.0, 0.0, 0.0])
        off = hh * np.sin(tilt) * side[:2]
        top_z = z + hh * np.cos(tilt)
        p.cylinder(x, y, z, top_z, r, _shade(o.color, 0.75), o.color, top_offset=off)
        water = st[_F["aux"]]
        if water > 0.05:
            p.poly(_circle(x + off[0], y + off[1], top_z, 0.8 * r), (70, 120, 200))
        hpos = np.array([x, y, z + 0.6 * hh]) - side * r
        p.line(hpos, hpos - side * 4.0, 2.0, _shade(o.color, 0.6))
        gl = all_states.get("glass")
        if gl is not None and held >= 0 and _pouring(st, gl[1], abs(tilt)):
            gst = gl[1]
            lip = np.array([x + off[0], y + off[1], top_z]) + np.sign(tilt) * r * np.append(side[:2], 0.0)
            p.line(lip, np.array([gst[_F["x"]], gst[_F["y"]], zc + gst[_F["z"]] + gl[0].dims[1]]), 1.3,
                   (80, 140, 220))
    elif o.kind == "glass":
        r, hh, _ = d
        p.cylinder(x, y, z, z + hh, r, o.color, _shade(o.color, 1.08))
        if prog > 0.02:
            p.cylinder(x, y, z + 0.5, z + 0.5 + prog * 0.9 * hh, 0.85 * r, (60, 110, 205), (90, 145, 225))
        px, zz = p.cam.project(_circle(x, y, z + hh, r))
        if (zz > 2).all():
            cv2.polylines(p.img, [_fix(px).reshape(-1, 1, 2)], True, _shade(o.color, 0.6), 1, cv2.LINE_AA, _SHIFT)


def _draw_hand(p: _Painter, scene: Scene, hand: HandReading, tool: str | None) -> None:
    skin, dark = scene.skin, _shade(scene.skin, 0.6)
    f = p.cam.focal
    # forearm: clip the elbow end to stay in front of the camera
    e, c = hand.elbow, hand.carpus
    (_, ze), (_, zcp) = p.cam.project(e[None]), p.cam.project(c[None])
    if zcp[0] < 3.0:
        return
    if ze[0] < 3.0:
        a = (3.0 - zcp[0]) / (ze[0] - zcp[0])
        e = c + 0.95 * a * (e - c)
    p.line(e, c, 4.5, scene.sleeve)
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
    th = max(1, int(round(1.7 * f / z)))
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


def draw(scene: Scene, state: np.ndarray, frame: Mapping[str, np.ndarray],
         hands: list[HandReading] | None = None) -> np.ndarray:
    """One native-resolution RGB frame ``(H, W, 3)`` uint8 from the state and this frame's raw actions."""
    w, h = scene.image_size
    img = np.empty((h, w, 3), dtype=np.uint8)
    cam = camera_from_body(frame["body_pose"], scene)
    _draw_background(img, scene, cam)
    p = _Painter(img, cam)
    hands = read_hands(frame) if hands is None else hands
    seg = scene.segments[int(state[0])]
    objs = [(o, object_state(state, i)) for i, o in enumerate(seg.objects)]
    by_kind = {o.kind: (o, st) for o, st in objs}
    for o, st in objs:  # shadows stay on the counter when objects are lifted
        r = o.footprint
        rx = o.dims[0] / 2 if o.kind in ("cucumber", "board", "sponge") else r
        ry = {"cucumber": o.dims[1], "board": o.dims[1] / 2, "sponge": o.dims[1] / 2}.get(o.kind, r)
        p.poly(_circle(st[_F["x"]] + 1.0, st[_F["y"]] + 1.0, scene.counter_z + 0.01, ry, rx=rx,
                       yaw=st[_F["yaw"]]), scene.shadow)

    def depth(item):
        o, st = item
        return -cam.project(np.array([[st[_F["x"]], st[_F["y"]], scene.counter_z + st[_F["z"]]]]))[1][0]

    order = sorted(objs, key=lambda it: (int(it[1][_F["held"]]) >= 0, it[0].kind != "board", depth(it)))
    for o, st in order:
        _draw_object(p, scene, o, st, hands, by_kind, seg.tool_right)
    tools = (None, seg.tool_right)
    zs = [cam.project(hd.carpus[None])[1][0] for hd in hands]
    for hi in sorted(range(2), key=lambda i: -zs[i]):
        _draw_hand(p, scene, hands[hi], tools[hi])
    return img


# ----------------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------------
def check_actions(actions: Mapping[str, np.ndarray]) -> int:
    """Validate raw clip actions ``{name: (T, *shape)}`` (all four modalities); returns T."""
    missing = [n for n in schema.MODALITY_NAMES if n not in actions]
    if missing:
        raise ActionInputError(f"the oracle needs all four modalities in raw units; missing {missing}")
    checked = schema.check_action_arrays({n: actions[n] for n in schema.MODALITY_NAMES}, error=ActionInputError)
    return int(next(iter(checked.values())).shape[0])


def iter_world(scene: Scene, initial_state: np.ndarray, actions: Mapping[str, np.ndarray],
               frame_times: Sequence[float], render_frames: bool = True):
    """Roll the world forward one frame at a time, yielding ``(state, frame)``: frame 0 is drawn from
    ``initial_state`` (the state *at* that frame); each later frame first steps the state by its time
    difference. ``frame`` is ``(H, W, 3)`` uint8, or None when ``render_frames`` is false."""
    T = check_actions(actions)
    times = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    if len(times) != T:
        raise ActionInputError(f"got {len(times)} frame times for {T} action steps")
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
