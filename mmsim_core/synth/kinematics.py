"""Hand and body geometry of the synthetic world, shared by the motion script and the renderer.

Coordinates: centimetres, x to the subject's right, y forward (away from the subject, across the
counter), z up. The script works in the *CoM frame* (origin at the Xsens centre of mass, which stays
fixed while the subject stands at the counter); the HDF5 adds the CoM's room position.

Everything is vectorised over a leading time axis so the script can build minutes of motion at once.
"""

from __future__ import annotations

import numpy as np

from mmsim_core import schema

# ----------------------------------------------------------------------------------------------
# Index tables into the raw clip arrays (first occurrence of each segment in the chain lists)
# ----------------------------------------------------------------------------------------------
BODY_INDEX = {name: schema.BODY_POSE_INDICES.index(schema.XSENS_BODY_SEGMENTS.index(name))
              for name in ("Head", "Neck", "T8", "Pelvis", "Left Upper Arm", "Right Upper Arm",
                           "Left Forearm", "Right Forearm", "Left Hand", "Right Hand")}
"""``body_pose[:, BODY_INDEX['Head']]`` is the Head segment (minus CoM)."""

HAND_INDEX = np.array([schema.HAND_POSE_INDICES.index(k) for k in range(schema.NUM_FINGER_SEGMENTS)])
"""``hand_pose[..., HAND_INDEX, :]`` -> the 20 finger segments (Xsens order) relative to the Carpus."""

# Xsens finger segment numbers (within one hand)
THUMB = (1, 2, 3)  # first metacarpal, proximal, distal
FINGERS = ((4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15), (16, 17, 18, 19))  # index..pinky: meta, prox, mid, dist
KNUCKLES = np.array([f[1] for f in FINGERS])  # proximal phalange origins = MCP joints


def hand_segments(hand_pose: np.ndarray) -> np.ndarray:
    """Raw ``hand_pose`` ``(..., 24, 3)`` -> the 20 Xsens finger segments ``(..., 20, 3)`` (carpus-relative)."""
    return np.asarray(hand_pose)[..., HAND_INDEX, :]


def fingertips(seg: np.ndarray) -> np.ndarray:
    """Fingertip points ``(..., 5, 3)`` (thumb first), extrapolated past the distal phalange origin:
    Xsens has no tip segment, but the renderer draws whole fingers."""
    thumb = seg[..., 3, :] + 0.9 * (seg[..., 3, :] - seg[..., 2, :])
    tips = [seg[..., f[3], :] + 0.8 * (seg[..., f[3], :] - seg[..., f[2], :]) for f in FINGERS]
    return np.stack([thumb] + tips, axis=-2)


def grip_point(seg: np.ndarray) -> np.ndarray:
    """Where the hand holds things, relative to the carpus ``(..., 3)``: between the knuckles and the
    curled fingertips, so a fist holds near the palm and an open hand reaches ahead of it."""
    knuckles = seg[..., KNUCKLES, :].mean(axis=-2)
    tips = fingertips(seg).mean(axis=-2)
    return 0.5 * knuckles + 0.5 * tips


def hand_yaw(seg: np.ndarray) -> np.ndarray:
    """Heading of the hand (carpus -> knuckles) about the vertical, radians (0 = forward, +y)."""
    d = seg[..., KNUCKLES, :].mean(axis=-2)
    return np.arctan2(-d[..., 0], d[..., 1])


def hand_roll(seg: np.ndarray) -> np.ndarray:
    """Roll of the knuckle line (pinky -> index) out of the horizontal, radians; positive when the
    thumb side is up. Pouring tilts a held pitcher by this angle."""
    v = seg[..., KNUCKLES[0], :] - seg[..., KNUCKLES[3], :]
    return np.arcsin(np.clip(v[..., 2] / np.maximum(np.linalg.norm(v, axis=-1), 1e-6), -1.0, 1.0))


# ----------------------------------------------------------------------------------------------
# Forward kinematics used by the motion script
# ----------------------------------------------------------------------------------------------
def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def hand_rotation(yaw, pitch, roll, side: int) -> np.ndarray:
    """``(T, 3, 3)`` map from hand-local (X fingers, Y toward the thumb, Z back of the hand) to world.
    ``side`` 0 left, 1 right (the thumb points to the subject's left on the right hand, palm down)."""
    yaw, pitch, roll = (np.asarray(a, dtype=np.float64) for a in (yaw, pitch, roll))
    thumb_x = -1.0 if side == 1 else 1.0
    base = np.array([[0.0, thumb_x, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # local -> world columns
    # roll about the finger axis (positive lifts the thumb side), pitch tips the fingers down
    return _rot_z(yaw) @ base @ _rot_x(roll) @ _rot_y(pitch)


def hand_fk(grip, yaw, pitch, roll, side: int, scale: float = 1.0) -> np.ndarray:
    """Finger segments ``(T, 20, 3)`` relative to the carpus, world axes. ``grip`` 0 (flat open hand) ..
    1 (fist) curls every joint; the thumb swings under the palm as the hand closes."""
    g = np.clip(np.asarray(grip, dtype=np.float64), 0.0, 1.0)[:, None]  # (T, 1)
    T = g.shape[0]
    local = np.zeros((T, 20, 3))
    lat = np.array([2.4, 0.8, -0.8, -2.4])  # index .. pinky, toward the thumb positive
    length = np.array([[4.6, 2.8], [5.0, 3.1], [4.7, 2.9], [3.8, 2.3]])
    knuckle_x = np.array([8.6, 8.8, 8.4, 7.8])
    th1, th2 = np.deg2rad(80.0) * g, np.deg2rad(100.0) * g  # MCP, PIP flexion (T, 1)
    for i, (meta, prox, mid, dist) in enumerate(FINGERS):
        local[:, meta] = (1.5, 0.45 * lat[i], 0.0)
        k = np.array([knuckle_x[i], lat[i], 0.0])
        local[:, prox] = k
        d1 = np.concatenate([np.cos(th1), np.zeros_like(g), -np.sin(th1)], axis=1)
        d2 = np.concatenate([np.cos(th1 + th2), np.zeros_like(g), -np.sin(th1 + th2)], axis=1)
        local[:, mid] = k + length[i, 0] * d1
        local[:, dist] = local[:, mid] + length[i, 1] * d2
    meta_dir = (1 - g) * np.array([0.55, 0.8, -0.1]) + g * np.array([0.75, 0.35, -0.55])
    tip_dir = (1 - g) * np.array([0.6, 0.8, 0.0]) + g * np.array([0.55, -0.35, -0.75])
    meta_dir /= np.linalg.norm(meta_dir, axis=1, keepdims=True)
    tip_dir /= np.linalg.norm(tip_dir, axis=1, keepdims=True)
    local[:, THUMB[0]] = (1.2, 1.6, -0.6)
    local[:, THUMB[1]] = local[:, THUMB[0]] + 3.8 * meta_dir
    local[:, THUMB[2]] = local[:, THUMB[1]] + 3.0 * tip_dir
    R = hand_rotation(yaw, pitch, roll, side)  # (T, 3, 3)
    return scale * np.einsum("tij,tsj->tsi", R, local)


def two_bone_elbow(shoulder: np.ndarray, hand: np.ndarray, upper: float, fore: float, out_dir: np.ndarray):
    """Elbow position ``(T, 3)`` for a two-bone arm reaching ``hand``; the elbow bends down and outward
    (``out_dir`` (3,) world direction)."""
    v = hand - shoulder
    d = np.linalg.norm(v, axis=-1, keepdims=True)
    dc = np.clip(d, abs(upper - fore) + 1e-3, upper + fore - 1e-3)
    u = v / np.maximum(d, 1e-6)
    x = (upper ** 2 - fore ** 2 + dc ** 2) / (2 * dc)
    h = np.sqrt(np.maximum(upper ** 2 - x ** 2, 0.0))
    hint = np.asarray(out_dir, dtype=np.float64) + np.array([0.0, 0.0, -1.0])
    w = hint - (u @ hint)[:, None] * u
    w /= np.maximum(np.linalg.norm(w, axis=-1, keepdims=True), 1e-6)
    return shoulder + x * u + h * w


def body_segments(lean, yaw, sway, nod, tilt, hand_l, hand_r, scale: float = 1.0) -> np.ndarray:
    """The 23 Xsens body segments ``(T, 23, 3)`` in the CoM frame.

    ``lean`` forward spine tilt, ``yaw`` torso turn, ``nod`` head pitch beyond the spine, ``tilt`` head
    tilt to the side (all radians, ``(T,)``); ``sway`` lateral pelvis shift (cm); hands = carpus targets.
    """
    T = len(lean)
    k = scale
    seg = np.zeros((T, schema.NUM_BODY_SEGMENTS, 3))
    idx = schema.XSENS_BODY_SEGMENTS.index
    Rz = _rot_z(np.asarray(yaw, dtype=np.float64))
    Rt = Rz @ _rot_x(-np.asarray(lean, dtype=np.float64))  # torso: yaw then forward lean
    pelvis = np.stack([np.asarray(sway, dtype=np.float64), np.zeros(T), np.full(T, -4.0 * k)], -1)
    seg[:, idx("Pelvis")] = pelvis
    for name, h in (("L5", 10), ("L3", 19), ("T12", 28), ("T8", 38), ("Neck", 50)):
        seg[:, idx(name)] = pelvis + (Rt @ np.array([0.0, 0.0, h * k]))
    a = np.asarray(lean) + np.asarray(nod)
    hv = np.stack([np.sin(tilt), np.cos(tilt) * np.sin(a), np.cos(tilt) * np.cos(a)], -1)
    seg[:, idx("Head")] = seg[:, idx("Neck")] + 11.0 * k * np.einsum("tij,tj->ti", Rz, hv)
    for side, sx in (("Right", 1.0), ("Left", -1.0)):
        seg[:, idx(f"{side} Shoulder")] = pelvis + Rt @ np.array([3.0 * sx * k, 0.0, 47.0 * k])
        sh = pelvis + Rt @ np.array([18.0 * sx * k, 0.0, 45.0 * k])
        seg[:, idx(f"{side} Upper Arm")] = sh
        hand = hand_r if side == "Right" else hand_l
        seg[:, idx(f"{side} Forearm")] = two_bone_elbow(sh, hand, 32.0 * k, 29.0 * k, np.array([sx, 0.0, 0.0]))
        seg[:, idx(f"{side} Hand")] = hand
        hip = pelvis + Rz @ np.array([9.0 * sx * k, 0.0, -6.0 * k])
        seg[:, idx(f"{side} Upper Leg")] = hip
        seg[:, idx(f"{side} Lower Leg")] = hip * np.array([1, 1, 0]) + np.array([0.0, 1.5 * k, -48.0 * k])
        seg[:, idx(f"{side} Foot")] = hip * np.array([1, 1, 0]) + np.array([0.0, 0.0, -88.0 * k])
        seg[:, idx(f"{side} Toe")] = hip * np.array([1, 1, 0]) + np.array([0.0, 15.0 * k, -93.0 * k])
    return seg


def _curl_table() -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(0.0, 1.0, 21)
    z = np.zeros_like(g)
    seg = hand_fk(g, z, z, z, 1)
    return g, _reach_ratio(seg)


def _reach_ratio(seg: np.ndarray) -> np.ndarray:
    """Fingertip distance from the carpus over knuckle distance: ~2.1 flat open hand .. ~0.7 fist, scale-free."""
    tips = np.linalg.norm(fingertips(seg)[..., 1:, :].mean(axis=-2), axis=-1)
    knuckles = np.linalg.norm(seg[..., KNUCKLES, :].mean(axis=-2), axis=-1)
    return tips / np.maximum(knuckles, 1e-6)


_CURL_G, _CURL_R = _curl_table()


def hand_curl(seg: np.ndarray) -> np.ndarray:
    """Finger closure of a measured hand ``(..., 20, 3)`` on the scale of :func:`hand_fk`'s ``grip``:
    0 flat open hand, ~0.5 holding a jar, 1 fist. Read from the finger geometry alone (any size or
    orientation), so a hand pose from anywhere gives its own closure."""
    r = _reach_ratio(np.asarray(seg, dtype=np.float64))
    return np.interp(-r, -_CURL_R, _CURL_G)  # the ratio falls as the hand closes
