"""Subjects, counter layouts and scripted activities of the synthetic world.

An activity is a sequence of motor primitives (reach, grasp, lift, carry, scrub, cut, twist, pour,
turn, release) written as keyframes of a few latent controls per hand: grip-point target (cm, CoM
frame), finger closure, hand heading / pitch / roll, grip force and its fingertip share, lift effort
and twist drive. Keyframes are joined by minimum-jerk interpolation on a 120 Hz grid; the sensors
(:mod:`mmsim_core.synth.recording`) are all derived from that grid, and so is the video.

Subjects differ in body size, skin or glove colour, speed, and force and effort habits, so the same
script gives different signals and different outcomes (a weak lifter's pitcher rises less).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from mmsim_core import schema
from mmsim_core.errors import MMSimError
from mmsim_core.synth import kinematics as kin
from mmsim_core.synth.world import EYE_OFFSET, LID_OPEN, ObjectSpec, Scene, Segment



class SynthConfigError(MMSimError, ValueError):
    """Bad arguments to the generator (the CLI prints these as one line, not a traceback)."""


GRID_HZ = 120.0
REST_Y = 30.0  # hands rest near the counter's front edge
REST_FORCE = 0.18  # resting hands lean lightly on the counter (below the grasp threshold)

ACTIVITIES = (
    "Peel a potato",
    "Slice a cucumber",
    "Clean a pan with a sponge",
    "Pour water from a pitcher into a glass",
    "Open/close a jar of almond butter",
    "Get/replace items from refrigerator/cabinets/drawers",
    "Slice a potato",
    "Clean a plate with a sponge",
    "Set table: 3 each large/small plates, bowls, mugs, glasses, sets of utensils",
    "Load dishwasher: 3 each large/small plates, bowls, mugs, glasses, sets of utensils",
)
BAD_NOTES = ("Subject dropped the object", "Glove connection glitch", "Activity restarted", "Xsens drift")

COUNTERS = ((200, 200, 195), (120, 120, 125), (60, 60, 65), (90, 70, 50), (150, 170, 160), (110, 130, 160),
            (230, 225, 210), (70, 95, 80))
SKIN = ((224, 172, 138), (198, 134, 96), (141, 85, 54), (92, 58, 40), (238, 196, 170))
GLOVES = ((40, 40, 44), (70, 90, 160), (225, 225, 220))
SLEEVES = ((50, 60, 110), (120, 40, 40), (40, 90, 60), (90, 90, 95), (200, 190, 170))


@dataclass
class Subject:
    name: str
    scale: float  # body size (1 = 175 cm)
    speed: float  # >1 moves faster
    force: float  # grip force habit
    effort: float  # lift effort habit
    skin: tuple[int, int, int]
    sleeve: tuple[int, int, int]
    pitch0: float
    com_height: float

    @property
    def counter_z(self) -> float:
        return 91.0 - self.com_height


def sample_subject(rng: np.random.Generator, index: int) -> Subject:
    scale = float(rng.uniform(0.92, 1.08))
    gloved = rng.random() < 0.4
    skin = GLOVES[rng.integers(len(GLOVES))] if gloved else SKIN[rng.integers(len(SKIN))]
    jitter = rng.integers(-12, 13, 3)
    skin = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(skin, jitter))
    return Subject(name=f"S{index:02d}", scale=scale, speed=float(rng.uniform(0.8, 1.25)),
                   force=float(rng.uniform(0.85, 1.2)), effort=float(rng.uniform(0.8, 1.2)), skin=skin,
                   sleeve=SLEEVES[rng.integers(len(SLEEVES))], pitch0=float(np.deg2rad(rng.uniform(32, 40))),
                   com_height=float(100.0 * scale * rng.uniform(0.97, 1.03)))


# ----------------------------------------------------------------------------------------------
# Textures
# ----------------------------------------------------------------------------------------------
def _noise(rng, h, w, cells, amp):
    small = rng.normal(0, 1, (max(2, h // cells), max(2, w // cells))).astype(np.float32)
    return amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def make_textures(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Counter top (150 x 80 cm) and backsplash (150 x 60 cm) at 2 px/cm, RGB uint8."""
    s = int(Scene.TEX_PX_PER_CM)
    w = int((Scene.TEX_X[1] - Scene.TEX_X[0]) * s)
    hc, hw = 80 * s, 60 * s
    base = np.array(COUNTERS[rng.integers(len(COUNTERS))], dtype=np.float32) + rng.uniform(-15, 15, 3)
    kind = rng.integers(3)
    c = np.empty((hc, w, 3), np.float32)
    c[:] = base
    c += _noise(rng, hc, w, 24, 10)[..., None] + rng.normal(0, 4, (hc, w, 1))
    if kind == 0:  # wood strips along x
        c += 9 * np.sin(np.arange(hc)[:, None, None] * 0.9 + _noise(rng, hc, w, 40, 2)[..., None])
    elif kind == 1:  # tiles
        c[::24] *= 0.6
        c[:, ::24] *= 0.6
    else:  # speckled stone
        c += (rng.random((hc, w, 1)) < 0.04) * rng.uniform(-60, 60)
    wall = np.empty((hw, w, 3), np.float32)
    wall[:] = rng.uniform(120, 235, 3)
    wall += _noise(rng, hw, w, 30, 6)[..., None]
    tile = int(rng.integers(14, 24))
    wall[::tile] *= 0.7
    wall[:, ::tile] *= 0.7
    return np.clip(c, 0, 255).astype(np.uint8), np.clip(wall, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Keyframe tracks
# ----------------------------------------------------------------------------------------------
CHANNELS = {"pos": 3, "grip": 1, "yaw": 1, "pitch": 1, "roll": 1, "force": 1, "tips": 1, "lift": 1, "twist": 1}


class HandTrack:
    """Keyframes of one hand's latent controls; ``to`` moves every channel given, holds the others."""

    def __init__(self, t0: float, speed: float, **values):
        self.t = float(t0)
        self.speed = speed
        self.cur = {k: np.atleast_1d(np.asarray(values[k], dtype=np.float64)) for k in CHANNELS}
        self.keys = {k: [(self.t, self.cur[k].copy())] for k in CHANNELS}

    def to(self, dur: float, **values) -> "HandTrack":
        self.t += max(dur / self.speed, 1e-3)
        for k, v in values.items():
            self.cur[k] = np.atleast_1d(np.asarray(v, dtype=np.float64))
        for k in CHANNELS:
            self.keys[k].append((self.t, self.cur[k].copy()))
        return self

    def wait_until(self, t: float) -> "HandTrack":
        if t > self.t + 1e-6:
            self.t = t
            for k in CHANNELS:
                self.keys[k].append((self.t, self.cur[k].copy()))
        return self

    @property
    def pos(self) -> np.ndarray:
        return self.cur["pos"].copy()

    def sample(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Minimum-jerk interpolation between keyframes: ``{channel: (T, dim)}``."""
        out = {}
        for k, keys in self.keys.items():
            kt = np.array([a for a, _ in keys])
            kv = np.stack([b for _, b in keys])
            if len(kt) == 1:
                out[k] = np.repeat(kv, len(t), axis=0)
                continue
            kt = kt + np.arange(len(kt)) * 1e-9  # keyframes at equal times: the later one wins
            j = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
            span = np.maximum(kt[j + 1] - kt[j], 1e-9)
            u = np.clip((t - kt[j]) / span, 0.0, 1.0)[:, None]
            s = u ** 3 * (10 - 15 * u + 6 * u * u)
            out[k] = kv[j] * (1 - s) + kv[j + 1] * s
        return out


def sync(*tracks: HandTrack) -> float:
    t = max(tr.t for tr in tracks)
    for tr in tracks:
        tr.wait_until(t)
    return t


# ----------------------------------------------------------------------------------------------
# Activity planners
# ----------------------------------------------------------------------------------------------
class Planner:
    """Writes the primitives of one activity into the two hand tracks."""

    def __init__(self, rng, subj: Subject, hands: tuple[HandTrack, HandTrack], seg: Segment):
        self.rng, self.subj, self.hands, self.seg = rng, subj, hands, seg
        self.zc = subj.counter_z
        self.objs = {o.kind: o for o in seg.objects}

    # --- helpers
    def rest(self, h: int) -> dict:
        sx = -1.0 if h == 0 else 1.0
        return dict(pos=(sx * 15.0, REST_Y, self.zc + 7.0), grip=0.3, yaw=-sx * 0.25, pitch=0.25, roll=0.0,
                    force=REST_FORCE, tips=0.3, lift=0.0, twist=0.0)

    def top(self, kind: str, dz: float = 0.0) -> np.ndarray:
        o = self.objs[kind]
        return np.array([o.x, o.y, self.zc + o.z_rest + o.height + dz])

    def mid(self, kind: str) -> np.ndarray:
        o = self.objs[kind]
        return np.array([o.x, o.y, self.zc + o.z_rest + 0.55 * o.height])

    def f(self, level: float) -> float:
        """Grip force with the subject's habit and a little trial-to-trial variation."""
        return float(level * self.subj.force * self.rng.uniform(0.92, 1.08))

    def reach(self, h, target, dur=0.8, yaw=None, pitch=0.35):
        tr = self.hands[h]
        kw = {} if yaw is None else {"yaw": yaw}
        tr.to(0.65 * dur, pos=np.asarray(target) + (0, 0, 6.0), grip=0.05, force=0.0, pitch=pitch, **kw)
        tr.to(0.35 * dur, pos=target)

    def grasp(self, h, grip, force, tips=0.3, dur=0.35):
        self.hands[h].to(dur, grip=grip, force=self.f(force), tips=tips)

    def lift(self, h, height, effort, dur=0.6):
        tr = self.hands[h]
        tr.to(dur, pos=tr.pos + (0, 0, height), lift=effort * self.subj.effort)

    def move(self, h, target, dur=0.7, **kw):
        self.hands[h].to(dur, pos=target, **kw)

    def release(self, h, dur=0.3):
        tr = self.hands[h]
        tr.to(dur, force=0.0, lift=0.0, twist=0.0, grip=0.1)
        tr.to(0.35, pos=tr.pos + (0, 0, 6.0))

    def go_rest(self, h, dur=0.8):
        self.hands[h].to(dur, **self.rest(h))

    def knife_grip_target(self, h, point: np.ndarray) -> np.ndarray:
        """Grip point that puts the blade middle of a held knife/peeler at ``point``."""
        yaw = float(self.hands[h].cur["yaw"][0])
        d = np.array([-np.sin(yaw), np.cos(yaw), -0.9])
        return point - 5.0 * d / np.linalg.norm(d)

    def loop(self, t_end: float, cycle_s: float, finish_s: float, min_cycles: int = 1):
        """Yield cycle numbers while there is time for another cycle and the finish."""
        n = 0
        tr = self.hands
        while n < min_cycles or max(t.t for t in tr) + (cycle_s + finish_s) / self.subj.speed < t_end:
            yield n
            n += 1
            if n > 200:
                return

    # --- activities
    def run(self, t_end: float) -> None:
        a = self.seg.activity
        if a in ("Peel a potato",):
            self.peel(t_end)
        elif a in ("Slice a cucumber", "Slice a potato"):
            self.slice(t_end)
        elif a in ("Clean a pan with a sponge", "Clean a plate with a sponge"):
            self.scrub(t_end)
        elif a.startswith("Pour water"):
            self.pour(t_end)
        elif a.startswith("Open/close a jar"):
            self.jar(t_end)
        else:
            self.carry(t_end)

    def peel(self, t_end):
        L, R = 0, 1
        p = self.mid("potato")
        side = p - (0.6 * self.objs["potato"].dims[0], 0.0, 0.0)  # hold it from the left: stays visible
        self.reach(L, side, yaw=0.2)
        self.grasp(L, 0.62, 0.75)
        self.lift(L, 9.0, 0.75)
        held = self.hands[L].pos + (4.0, 2.0, 0.0)
        self.move(L, held, 0.5, yaw=0.6)
        sync(*self.hands)
        lift = self.hands[L].pos[2] - side[2]
        centre = held + (0.6 * self.objs["potato"].dims[0], 0.0, 0.0) - (0, 0, lift * 0.3)
        for _ in self.loop(t_end, 1.1, 2.6):
            a = self.rng.uniform(-0.6, 0.6)
            start = centre + np.array([3.0 + 2 * a, -3.0, 3.0])
            end = centre + np.array([3.0 + 2 * a, 3.5, 0.5])
            self.move(R, self.knife_grip_target(R, start), 0.35, grip=0.75, yaw=-0.3)
            self.hands[R].to(0.5, pos=self.knife_grip_target(R, end), force=self.f(0.8), tips=0.6)
            self.hands[R].to(0.25, pos=self.hands[R].pos + (0, -2, 5), force=0.05)
            self.hands[L].wait_until(self.hands[R].t)
        self.go_rest(R, 0.6)
        self.move(L, side + (0, 0, 1.0), 0.6, yaw=0.2)
        self.release(L)
        self.go_rest(L)

    def slice(self, t_end):
        L, R = 0, 1
        kind = "cucumber" if "cucumber" in self.objs else "potato"
        o = self.objs[kind]
        ax = np.array([np.cos(o.yaw), np.sin(o.yaw), 0.0])
        length = o.dims[0] if kind == "cucumber" else 2 * o.dims[0]
        end = np.array([o.x, o.y, self.zc + o.z_rest + 0.6 * o.height]) - 0.5 * length * ax
        self.reach(L, end + 0.12 * length * ax, yaw=0.3)
        self.grasp(L, 0.55, 0.6)
        sync(*self.hands)
        top_z = self.zc + o.z_rest + o.height
        for n in self.loop(t_end, 1.0, 1.5):
            u = 0.3 + 0.09 * (n % 8)
            c = end + u * length * ax
            above = np.array([c[0], c[1], top_z + 5.0])
            below = np.array([c[0], c[1], top_z - 1.0])
            self.move(R, self.knife_grip_target(R, above), 0.35, grip=0.8, yaw=-0.1, force=self.f(0.15))
            self.hands[R].to(0.35, pos=self.knife_grip_target(R, below), force=self.f(0.95), tips=0.2)
            self.hands[R].to(0.3, pos=self.knife_grip_target(R, above), force=0.05)
            self.hands[L].wait_until(self.hands[R].t)
        self.go_rest(R, 0.6)
        self.release(L)
        self.go_rest(L)

    def scrub(self, t_end):
        L, R = 0, 1
        target = "pan" if "pan" in self.objs else "plate"
        tgt = self.objs[target]
        if target == "pan":
            r, depth, hl = tgt.dims
            handle = np.array([tgt.x - r - 0.7 * hl, tgt.y, self.zc + depth])
            self.reach(L, handle, yaw=-0.2)
            self.grasp(L, 0.7, 0.6)
        floor = np.array([tgt.x, tgt.y, self.zc + tgt.height * 0.3])
        self.reach(R, self.mid("sponge"), yaw=-0.3)
        self.grasp(R, 0.45, 0.7, tips=0.5)
        self.lift(R, 7.0, 0.55)
        self.move(R, floor + (0, 0, 8.0), 0.6)
        self.move(R, floor + (0, 0, 1.5), 0.35)
        rad = 0.35 * tgt.dims[0]
        for n in self.loop(t_end, 1.2, 3.0):
            lvl = self.rng.uniform(0.55, 1.0)
            for k in range(4):
                a = (n * 4 + k) * np.pi / 2
                self.move(R, floor + (rad * np.cos(a), rad * np.sin(a), 1.5), 0.3, force=self.f(lvl),
                          lift=0.15 * self.subj.effort)
            self.hands[L].wait_until(self.hands[R].t)
        self.lift(R, 8.0, 0.55, 0.4)
        o = self.objs["sponge"]
        self.move(R, np.array([o.x, o.y, self.zc + 8.0]), 0.6)
        self.move(R, self.mid("sponge"), 0.4)
        self.release(R)
        self.go_rest(R)
        if target == "pan":
            self.release(L)
        self.go_rest(L)

    def pour(self, t_end):
        L, R = 0, 1
        pit, gl = self.objs["pitcher"], self.objs["glass"]
        self.reach(R, self.mid("pitcher"), yaw=-0.2)
        self.grasp(R, 0.5, 0.85)
        self.lift(R, 12.0, 0.85)
        above = np.array([gl.x + 6.0, gl.y + 1.0, self.hands[R].pos[2] + 2.0])
        self.move(R, above, 0.8)
        self.reach(L, np.array([gl.x - 9.0, gl.y - 2.0, self.zc + 6.0]), yaw=0.3)
        sync(*self.hands)
        for _ in self.loop(t_end, 2.4, 3.0):
            self.hands[R].to(0.6, roll=np.deg2rad(self.rng.uniform(58, 72)))
            self.hands[R].to(self.rng.uniform(0.6, 1.4))
            self.hands[R].to(0.6, roll=0.0)
            self.hands[R].to(0.3)
            self.hands[L].wait_until(self.hands[R].t)
        self.go_rest(L, 0.6)
        self.move(R, self.mid("pitcher") + (0, 0, 12.0), 0.8)
        self.move(R, self.mid("pitcher"), 0.5, lift=0.3)
        self.release(R)
        self.go_rest(R)

    def jar(self, t_end):
        L, R = 0, 1
        r = self.objs["jar"].dims[0]
        # hold the jar from the left and the lid from the right-front: the lid's mark stays visible
        self.reach(L, self.mid("jar") + (-(r + 1.0), -1.0, 0), yaw=0.5)
        self.grasp(L, 0.5, 0.7)
        lid = self.top("jar", 1.5) + (0.75 * r, -0.5 * r, 0)
        self.reach(R, lid, yaw=0.4, pitch=0.8)
        sync(*self.hands)
        angle, direction = 0.0, 1.0
        for _ in self.loop(t_end, 1.05, 1.5):
            if direction > 0 and angle > LID_OPEN + 0.5:
                direction = -1.0
            elif direction < 0 and angle < 0.2:
                direction = 1.0
            y0 = 0.4 if direction > 0 else -0.5
            w = self.rng.uniform(0.75, 1.0) * direction
            self.hands[R].to(0.2, grip=0.6, force=self.f(0.65), tips=0.8, yaw=y0)
            self.hands[R].to(0.15, twist=w, lift=0.1)
            self.hands[R].to(0.45, yaw=y0 - 0.9 * direction)  # the wrist turns with the lid
            self.hands[R].to(0.25, twist=0.0, force=0.0, grip=0.2, yaw=y0)
            angle += 5.0 * abs(w) * 0.6 / self.subj.speed * direction  # rough estimate of the lid's turn
            self.hands[L].wait_until(self.hands[R].t)
        self.release(R)
        self.go_rest(R)
        self.release(L)
        self.go_rest(L)

    def carry(self, t_end):
        kind = next(k for k in ("plate", "glass", "jar", "potato", "sponge") if k in self.objs)
        h = 0 if self.objs[kind].x < 0 else 1
        o = self.objs[kind]
        src = self.mid(kind)
        dst = np.array([-o.x * 0.2, 42.0 + self.rng.uniform(-3, 3), src[2]])
        for n in self.loop(t_end, 4.6, 0.0):
            a, b = (src, dst) if n % 2 == 0 else (dst, src)
            self.reach(h, a, yaw=0.0)
            self.grasp(h, 0.5, 0.75)
            self.lift(h, 12.0, 0.8)
            mid = (a + b) / 2 + (0, 0, 12.0)
            self.move(h, mid, 0.5, yaw=(0.6 if n % 2 == 0 else -0.3))  # turn the item while carrying
            self.move(h, b + (0, 0, 6.0), 0.5)
            self.move(h, b, 0.4, lift=0.3)
            self.release(h)  # and straight on to the next item: the hand is in contact most of the time
            self.hands[1 - h].wait_until(self.hands[h].t)
        self.go_rest(h, 0.7)
        self.hands[1 - h].wait_until(self.hands[h].t)


# ----------------------------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------------------------
def _color(rng, base, spread=25):
    return tuple(int(np.clip(b + rng.integers(-spread, spread + 1), 0, 255)) for b in base)


def make_object(rng, kind: str, x: float, y: float, z_rest: float = 0.0, yaw: float | None = None) -> ObjectSpec:
    u = rng.uniform
    yaw = float(u(-0.4, 0.4)) if yaw is None else yaw
    if kind == "pan":
        return ObjectSpec(kind, x, y, 0.0, (u(11, 13), u(4, 5), u(12, 15)), _color(rng, (60, 60, 65)),
                          _color(rng, (120, 120, 125)), z_rest, weight=34.0, progress0=1.0)
    if kind == "plate":
        return ObjectSpec(kind, x, y, 0.0, (u(10, 12), 1.5, 0), _color(rng, (230, 230, 225), 20),
                          _color(rng, (200, 200, 210), 40), z_rest, weight=26.0, progress0=0.8)
    if kind == "potato":
        return ObjectSpec(kind, x, y, yaw, (u(6.0, 7.0), u(4.2, 4.8), u(6, 7)), _color(rng, (150, 110, 60)),
                          (232, 214, 150), z_rest, weight=20.0)
    if kind == "cucumber":
        return ObjectSpec(kind, x, y, yaw, (u(22, 26), u(2.5, 3.0), 0), _color(rng, (40, 110, 40)),
                          _color(rng, (190, 225, 150)), z_rest, weight=20.0)
    if kind == "board":
        return ObjectSpec(kind, x, y, yaw * 0.3, (u(32, 36), u(20, 24), 2.0), _color(rng, (190, 150, 100)),
                          (0, 0, 0), z_rest, graspable=False)
    if kind == "jar":
        return ObjectSpec(kind, x, y, 0.0, (u(5.5, 6.5), u(10, 12), 2.5), _color(rng, (170, 120, 70)),
                          _color(rng, (200, 60, 50), 60), z_rest, weight=26.0)
    if kind == "sponge":
        return ObjectSpec(kind, x, y, yaw, (u(11, 13), u(7, 8), 3.5), _color(rng, (240, 220, 60)),
                          _color(rng, (40, 150, 60)), z_rest, weight=20.0)
    if kind == "pitcher":
        return ObjectSpec(kind, x, y, 0.0, (u(6.5, 7.5), u(17, 20), 0), _color(rng, (200, 90, 60), 50),
                          (0, 0, 0), z_rest, weight=34.0, aux0=1.0)
    if kind == "glass":
        return ObjectSpec(kind, x, y, 0.0, (u(4.2, 4.8), u(10, 12), 0), (205, 225, 232), (0, 0, 0), z_rest,
                          weight=20.0)
    raise ValueError(kind)


def make_layout(rng, activity: str) -> tuple[list[ObjectSpec], str | None]:
    u = rng.uniform
    cx, cy = u(-4, 4), u(42, 47)
    distractor = rng.random() < 0.5
    tool = None
    if activity == "Peel a potato":
        objs = [make_object(rng, "potato", cx - 6, cy)]
        tool = "peeler"
        if distractor:
            objs.insert(0, make_object(rng, "board", cx + 14, cy + 14))
    elif activity in ("Slice a cucumber", "Slice a potato"):
        board = make_object(rng, "board", cx, cy + 2)
        food = "cucumber" if "cucumber" in activity else "potato"
        objs = [board, make_object(rng, food, cx, cy + 2, z_rest=2.0, yaw=float(board.yaw + u(-0.15, 0.15)))]
        tool = "knife"
    elif "with a sponge" in activity:
        tgt = "pan" if "pan" in activity else "plate"
        objs = [make_object(rng, tgt, cx - 3, cy + 3), make_object(rng, "sponge", cx + 17, cy - 3)]
    elif activity.startswith("Pour water"):
        objs = [make_object(rng, "glass", cx - 6, cy + 2), make_object(rng, "pitcher", cx + 15, cy)]
        objs[0].graspable = False  # the other hand steadies the glass, it is not picked up
    elif activity.startswith("Open/close a jar"):
        objs = [make_object(rng, "jar", cx, cy)]
        if distractor:
            objs.insert(0, make_object(rng, "plate", cx - 18, cy + 12))
    else:
        kinds = ("plate", "glass", "jar") if activity.startswith("Get/replace") else ("plate", "glass")
        kind = kinds[rng.integers(len(kinds))]
        side = 1.0 if rng.random() < 0.6 else -1.0
        objs = [make_object(rng, kind, side * u(12, 16), u(48, 54))]
        if distractor:
            objs.insert(0, make_object(rng, "board", -side * 16, cy + 16))
    return objs, tool


# ----------------------------------------------------------------------------------------------
# A whole recording's script
# ----------------------------------------------------------------------------------------------
@dataclass
class Script:
    subject: Subject
    scene: Scene
    hands: tuple[HandTrack, HandTrack]


def plan_recording(rng: np.random.Generator, subject: Subject, seconds: float, t_start: float,
                   first_activity: int = 0, activities: Sequence[str] | None = None) -> Script:
    """Segments of activities filling ``seconds``: each starts from rest, runs its primitives and
    returns to rest; layouts change in the short idle gaps between activities."""
    if seconds < 4.0:
        raise SynthConfigError(f"seconds must be at least 4 (one short activity), got {seconds}")
    zc = subject.counter_z
    hands = (HandTrack(0.0, subject.speed, **_rest_values(0, zc)), HandTrack(0.0, subject.speed, **_rest_values(1, zc)))
    segments: list[Segment] = []
    cycle = tuple(activities) if activities else ACTIVITIES[first_activity:] + ACTIVITIES[:first_activity]
    for a in cycle:
        if a not in ACTIVITIES:
            raise SynthConfigError(f"activity must be one of {list(ACTIVITIES)}, got {a!r}")
    order = [cycle[i % len(cycle)] for i in range(64)]
    t, k = 0.0, 0
    while seconds - t >= 4.0 and k < len(order):
        activity = order[k]
        remaining = seconds - t
        dur = float(rng.uniform(11.0, 20.0))
        if remaining - dur < 9.0:
            dur = remaining - 0.9
        act_t0 = t + 0.5
        r = rng.random()
        if r < 0.8:
            rating, notes = "Good", ""
        else:
            rating, notes = ("Maybe", "") if r < 0.92 else ("Bad", str(rng.choice(BAD_NOTES)))
        objs, tool = make_layout(rng, activity)
        seg = Segment(t0=t, t1=seconds, activity=activity, act_t0=act_t0, act_t1=act_t0, rating=rating,
                      objects=objs, tool_right=tool, notes=notes)
        for tr in hands:
            tr.wait_until(act_t0)
        Planner(rng, subject, hands, seg).run(t + dur)
        end = sync(*hands)
        seg.act_t1 = float(min(end, seconds - 0.2))
        if segments:
            segments[-1].t1 = seg.t0
        segments.append(seg)
        t = end + 0.5
        k += 1
        for tr in hands:
            tr.wait_until(min(t, seconds))
    counter, wall = make_textures(rng)
    scene = Scene(subject=subject.name, t_start=t_start, segments=segments, skin=subject.skin,
                  sleeve=subject.sleeve, pitch0=subject.pitch0, counter_z=zc,
                  shadow=tuple(int(c) for c in counter.reshape(-1, 3).mean(0) * 0.55),
                  counter_texture=counter, wall_texture=wall)
    return Script(subject, scene, hands)


def _rest_values(h: int, zc: float) -> dict:
    sx = -1.0 if h == 0 else 1.0
    return dict(pos=(sx * 15.0, REST_Y, zc + 7.0), grip=0.3, yaw=-sx * 0.25, pitch=0.25, roll=0.0, force=REST_FORCE,
                tips=0.3, lift=0.0, twist=0.0)


# ----------------------------------------------------------------------------------------------
# Continuous signals on the grid
# ----------------------------------------------------------------------------------------------
def smooth_noise(rng, t: np.ndarray, period: float, amp: float, dims: int = 1) -> np.ndarray:
    """Band-limited noise ``(T, dims)``: random knots every ``period`` s, smoothstep in between."""
    n = int(np.ceil((t[-1] - t[0]) / period)) + 2
    knots = rng.normal(0, amp, (n, dims))
    x = (t - t[0]) / period
    i = np.clip(x.astype(int), 0, n - 2)
    u = (x - i)[:, None]
    s = u * u * (3 - 2 * u)
    return knots[i] * (1 - s) + knots[i + 1] * s


@dataclass
class Signals:
    """The world's true continuous signals on the grid (CoM frame unless stated)."""

    t: np.ndarray  # (T,) seconds since the recording start
    body: np.ndarray  # (T, 23, 3) body segments
    fingers: np.ndarray  # (T, 2, 20, 3) finger segments relative to the carpus
    hand_rot: np.ndarray  # (T, 2, 3, 3)
    torso: np.ndarray  # (T, 4) lean, yaw, nod, tilt (rad)
    force: np.ndarray  # (T, 2) grip force level
    tips: np.ndarray  # (T, 2) fingertip share of the force
    emg_env: np.ndarray  # (T, 2, 8) EMG envelope (expected |emg|)


EMG_FORCE, EMG_LIFT, EMG_TWIST_ABS, EMG_TWIST = 18.0, 40.0, 12.0, 16.0
EMG_GRIP, EMG_TONE = 6.0, 3.0


def build_signals(rng, script: Script, seconds: float) -> Signals:
    subj, scene = script.subject, script.scene
    t = np.arange(0.0, seconds + 0.6, 1.0 / GRID_HZ)
    T = len(t)
    ch = [tr.sample(t) for tr in script.hands]
    fingers, rots, carpus = [], [], []
    for h in range(2):
        c = ch[h]
        # fingers and wrist never hold still: the closure and the hand's angles wander a little, so no
        # two moments show the same hand
        c["grip"] = np.clip(c["grip"] + smooth_noise(rng, t, 0.6, 0.09), 0.0, 1.0)
        for k, amp in (("yaw", 0.12), ("pitch", 0.1), ("roll", 0.08)):
            c[k] = c[k] + smooth_noise(rng, t, 0.8, amp)
        rel = kin.hand_fk(c["grip"][:, 0], c["yaw"][:, 0], c["pitch"][:, 0], c["roll"][:, 0], h, subj.scale)
        pos = c["pos"] + smooth_noise(rng, t, 0.4, 0.25, 3)  # physiological tremor
        carpus.append(pos - kin.grip_point(rel))
        fingers.append(rel)
        rots.append(kin.hand_rotation(c["yaw"][:, 0], c["pitch"][:, 0], c["roll"][:, 0], h))
    # the head looks at the work: between the hands and the current layout's objects
    centres = np.zeros((T, 3))
    for seg in scene.segments:
        m = (t >= seg.t0) & (t < seg.t1 if seg is not scene.segments[-1] else True)
        if seg.objects:
            centres[m] = np.mean([[o.x, o.y, scene.counter_z + o.z_rest] for o in seg.objects], axis=0)
    hands_mid = 0.5 * (ch[0]["pos"] + ch[1]["pos"])
    look = 0.35 * hands_mid + 0.65 * centres + np.array([0.0, 4.0, 0.0])
    k = int(0.35 * GRID_HZ)  # the head follows with a lag (moving average)
    kern = np.ones(k) / k
    look = np.stack([np.convolve(np.pad(look[:, i], (k, k), mode="edge"), kern, "same")[k:-k] for i in range(3)], -1)
    noise = {k: smooth_noise(rng, t, p, a)[:, 0] for k, p, a in
             (("lean", 2.0, 0.02), ("nod", 0.8, 0.02), ("yaw", 3.0, 0.02), ("tilt", 1.0, 0.015), ("sway", 3.0, 0.8))}
    eye = np.tile(np.array([0.0, 15.0, 60.0 * subj.scale]), (T, 1))
    for _ in range(3):  # aim the camera (the head moves with the lean, so iterate)
        d = look - eye
        pitch_des = np.arctan2(-d[:, 2], np.hypot(d[:, 0], d[:, 1]))
        yaw_des = np.arctan2(-d[:, 0], d[:, 1])
        lean = 0.12 + 0.2 * (pitch_des - 1.0) + noise["lean"]
        nod = pitch_des - subj.pitch0 - lean + noise["nod"]
        torso_yaw = 0.3 * yaw_des + noise["yaw"]
        tilt = -(yaw_des - torso_yaw) + noise["tilt"]
        body = kin.body_segments(lean, torso_yaw, noise["sway"], nod, tilt, carpus[0], carpus[1], subj.scale)
        head = body[:, schema.XSENS_BODY_SEGMENTS.index("Head")]
        cam_yaw = torso_yaw - tilt
        ey, ez = EYE_OFFSET
        eye = head + np.stack([-ey * np.sin(cam_yaw), ey * np.cos(cam_yaw), np.full(T, ez)], -1)
    force = np.stack([np.clip(c["force"][:, 0], 0, 1.3) for c in ch], 1)
    tips = np.stack([np.clip(c["tips"][:, 0], 0, 1) for c in ch], 1)
    # EMG envelope: correlated with grip force, plus lift effort and twist that force does not carry
    env = np.empty((T, 2, 8))
    sign = np.array([1.0] * 4 + [-1.0] * 4)
    for h in range(2):
        c = ch[h]
        gain = np.tile(rng.uniform(0.8, 1.2, 4), 2)  # flexor/extensor pairs share a gain (no fake twist)
        wobble = 1.0 + smooth_noise(rng, t, 0.5, 0.08, 8)
        lift, tw = np.clip(c["lift"][:, 0], 0, 1.5), np.clip(c["twist"][:, 0], -1, 1)
        drive = (EMG_FORCE * force[:, h] + EMG_LIFT * lift + EMG_TWIST_ABS * np.abs(tw))[:, None]
        # muscle activity force does not explain: finger flexion itself (equal on flexor/extensor
        # pairs, so it fakes no twist) and slowly drifting tone
        posture = EMG_GRIP * np.clip(c["grip"][:, 0], 0, 1)[:, None]
        tone = np.abs(smooth_noise(rng, t, 1.5, EMG_TONE, 1))
        env[:, h] = 5.0 + gain * wobble * drive + posture + tone + EMG_TWIST * tw[:, None] * sign
    return Signals(t=t, body=body, fingers=np.stack(fingers, 1), hand_rot=np.stack(rots, 1),
                   torso=np.stack([lean, torso_yaw, nod, tilt], -1), force=force, tips=tips,
                   emg_env=np.maximum(env, 0.5))
