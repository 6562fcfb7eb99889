"""Sensors of the synthetic world and the recording writer (ActionSense layout).

Every sensor samples the same true signals (:class:`~mmsim_core.synth.script.Signals`) at its own
jittered clock: Myo EMG at ~200 Hz (int32, -128..127, |emg| averages the envelope) plus IMU at 50 Hz,
tactile gloves at an irregular ~20 Hz (ADC: 515-530 untouched, up to ~600 pressed), Xsens at ~60 Hz,
gaze at ~120 Hz, the world camera at ~30 fps. The world video is drawn by the oracle
(:func:`mmsim_core.synth.world.iter_world`) from the true signals at the frame times, and the world
state at every frame goes to a sidecar ``<hdf5 stem>.oracle.npz`` beside the HDF5::

    format           'mmsim-synth-oracle-v2'
    scene_json       world.Scene as JSON (subject look, camera pitch, counter height, segments with their
                     activity, Start/Stop times, rating, tool and object layout); times in seconds since
                     the recording start ``t_start`` (epoch seconds)
    counter_texture  uint8 (160, 300, 3)   counter top, 2 px/cm;  wall_texture uint8 (120, 300, 3)
    frame_times      float64 (N,)          world-video frame times, seconds since t_start
    states           float64 (N, 49)       world state *at* each frame (``state_fields`` names the columns;
                                           each object's own fields are ``world.OBJECT_CLASSES[kind].FIELDS``)
    gloves           float32 (2, 2, 32, 32) per hand: taxel sensitivity pattern, untouched baseline
    grip_force, grip_tips  (N, 2)          the true tactile drive at each frame (for glove-less files)
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from mmsim_core import schema
from mmsim_core.data.actionsense import ACTIVITY_DEVICE, ACTIVITY_STREAM, VIDEO_DEVICE, VIDEO_STREAM
from mmsim_core.synth import kinematics as kin
from mmsim_core.synth import script as sc
from mmsim_core.synth import world
from mmsim_core.synth.script import SynthConfigError
from mmsim_core.video import VideoWriter

logger = logging.getLogger(__name__)

EPOCH0 = 1_654_600_000.0  # 2022-06-07, like the ActionNet recordings
FPS = 30.0
ORACLE_FORMAT = "mmsim-synth-oracle-v2"
ORACLE_SUFFIX = ".oracle.npz"


# ----------------------------------------------------------------------------------------------
# Tactile glove model
# ----------------------------------------------------------------------------------------------
def glove_masks() -> np.ndarray:
    """``(3, 32, 32)`` taxel regions: fingertips, rest of the fingers, palm."""
    tip, finger, palm = (np.zeros((32, 32), np.float32) for _ in range(3))
    for k, c in enumerate((2, 8, 14, 20, 26)):
        first = 6 if k == 4 else 0  # the thumb strip is shorter
        tip[first:first + 5, c:c + 4] = 1
        finger[first + 5:16, c:c + 4] = 1
    palm[17:31, 2:30] = 1
    return np.stack([tip, finger, palm])


def tactile_maps(force: np.ndarray, tips: np.ndarray, pattern: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """ADC maps ``(N, 32, 32)`` float32 from grip force ``(N,)`` and its fingertip share ``(N,)``."""
    m = glove_masks()
    w = np.stack([0.6 + 0.6 * tips, np.full_like(tips, 0.9), 1.0 - 0.7 * tips], -1)  # (N, 3)
    act = np.einsum("nr,rij->nij", w * force[:, None], m) * pattern  # (N, 32, 32)
    return (baseline + 80.0 * np.clip(act, 0.0, 1.05)).astype(np.float32)


def glove(rng) -> tuple[np.ndarray, np.ndarray]:
    """Per-glove spatial sensitivity pattern and untouched baseline (ADC 515-528)."""
    import cv2

    pat = cv2.GaussianBlur(rng.uniform(0.6, 1.4, (32, 32)).astype(np.float32), (5, 5), 1.2)
    base = rng.uniform(515.0, 528.0, (32, 32)).astype(np.float32)
    return pat, base


# ----------------------------------------------------------------------------------------------
# Sampling helpers
# ----------------------------------------------------------------------------------------------
def interp(t_grid: np.ndarray, arr: np.ndarray, tq: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``arr`` ``(T, ...)`` on the uniform grid to times ``tq``."""
    dt = t_grid[1] - t_grid[0]
    x = np.clip((tq - t_grid[0]) / dt, 0, len(t_grid) - 1.000001)
    i = x.astype(np.int64)
    f = (x - i).reshape((-1,) + (1,) * (arr.ndim - 1))
    return arr[i] * (1 - f) + arr[i + 1] * f


def clock(rng, seconds: float, hz: float, jitter: float, start: float = 0.0) -> np.ndarray:
    """Jittered sample times in ``[start, seconds]`` (relative seconds), strictly increasing."""
    n = int((seconds - start) * hz * 1.1) + 4
    dt = (1.0 / hz) * (1.0 + jitter * rng.uniform(-1, 1, n))
    t = start + rng.uniform(0, 1.0 / hz) + np.concatenate([[0.0], np.cumsum(dt[:-1])])
    return t[t <= seconds]


def time_str(t_abs: np.ndarray) -> np.ndarray:
    """``(N, 1)`` S26 ``'YYYY-mm-dd HH:MM:SS.ffffff'``."""
    out = [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(x))) + ".%06d" % int(round((x % 1) * 1e6) % 1000000)
           for x in np.asarray(t_abs).reshape(-1)]
    return np.array(out, dtype="S26").reshape(-1, 1)


def write_stream(f: h5py.File, device: str, name: str, data: np.ndarray, t_abs: np.ndarray, headings=None,
                 extra: dict | None = None) -> None:
    g = f.require_group(device).create_group(name)
    g.create_dataset("data", data=data)
    g.create_dataset("time_s", data=np.asarray(t_abs, dtype=np.float64).reshape(-1, 1))
    g.create_dataset("time_str", data=time_str(t_abs))
    for k, v in (extra or {}).items():
        g.create_dataset(k, data=v)
    if headings is not None:
        g.attrs["Data headings"] = str(list(headings))


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` proper rotations -> ``(..., 4)`` quaternions (w, x, y, z)."""
    m = R
    w = np.sqrt(np.maximum(1.0 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2], 1e-9)) / 2
    x = (m[..., 2, 1] - m[..., 1, 2]) / (4 * w)
    y = (m[..., 0, 2] - m[..., 2, 0]) / (4 * w)
    z = (m[..., 1, 0] - m[..., 0, 1]) / (4 * w)
    q = np.stack([w, x, y, z], -1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _proper(R: np.ndarray) -> np.ndarray:
    """Left-hand frames are mirrored (det -1); flip the thumb axis for orientation output."""
    R = R.copy()
    neg = np.linalg.det(R) < 0
    R[neg, :, 1] *= -1
    return R


# ----------------------------------------------------------------------------------------------
# Raw clip actions from the true signals
# ----------------------------------------------------------------------------------------------
def true_actions(sig: sc.Signals, gloves, tq: np.ndarray) -> dict[str, np.ndarray]:
    """Raw clip values (the schema's conventions) of the true signals at times ``tq``: what the oracle
    draws from. EMG is the expected envelope averaged over the 0.1 s window preprocessing uses."""
    body = interp(sig.t, sig.body, tq)  # (Q, 23, 3) CoM frame
    fingers = interp(sig.t, sig.fingers, tq)  # (Q, 2, 20, 3) carpus-relative
    env = np.mean([interp(sig.t, sig.emg_env, tq + d) for d in np.linspace(-0.05, 0.05, 5)], axis=0)
    force, tips = interp(sig.t, sig.force, tq), interp(sig.t, sig.tips, tq)
    maps = np.stack([tactile_maps(force[:, h], tips[:, h], *gloves[h]) for h in range(2)], 1)
    return {
        "hand_pose": fingers[:, :, list(schema.HAND_POSE_INDICES)].astype(np.float32),
        "body_pose": body[:, list(schema.BODY_POSE_INDICES)].astype(np.float32),
        "emg": env.astype(np.float32),
        "hand_force": maps,
    }


# ----------------------------------------------------------------------------------------------
# One recording
# ----------------------------------------------------------------------------------------------
def recording_names(subject_index: int, seed: int) -> tuple[str, str, float]:
    """(folder name, file stamp, epoch start) of a subject's recording."""
    t0 = EPOCH0 + 86400.0 * subject_index + 3600.0 * ((seed * 7 + subject_index * 5) % 9) + 60.0 * (seed % 60)
    g = time.gmtime(t0)
    date = time.strftime("%Y-%m-%d", g)
    return f"{date}_experiment_S{subject_index:02d}", time.strftime("%Y-%m-%d_%H-%M-%S", g), t0


def generate_recording(out: str | Path, subject_index: int, seconds: float = 120.0, seed: int = 0,
                       tactile: bool = True, activities: Sequence[str] | None = None,
                       counterfactuals: int = 0) -> Path:
    """Write one subject's recording (HDF5 + world mp4 + oracle sidecar) under ``out``; returns the HDF5.
    ``activities`` (names from ``script.ACTIVITIES``) fixes the activity order, cycled to fill ``seconds``;
    by default each subject starts at a random activity of the full list. ``counterfactuals`` K also
    writes K variants under ``out/counterfactual/`` (see :func:`write_counterfactual`)."""
    if not seconds >= 4.0:
        raise SynthConfigError(f"seconds must be at least 4, got {seconds!r}")
    rng = np.random.default_rng([int(seed), int(subject_index), 7919])
    folder_name, stamp, t0 = recording_names(subject_index, seed)
    folder = Path(out) / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    subj_tag = f"S{subject_index:02d}"
    h5_path = folder / f"{stamp}_streamLog_actionNet-wearables_{subj_tag}.hdf5"
    video_path = folder / f"{stamp}_{subj_tag}_eye-tracking-video-world_frame.mp4"

    subject = sc.sample_subject(rng, subject_index)
    first = int(rng.integers(len(sc.ACTIVITIES)))
    script = sc.plan_recording(rng, subject, seconds, t0, first_activity=first, activities=activities)
    sig = sc.build_signals(rng, script, seconds)
    scene = script.scene
    gloves = [glove(rng) for _ in range(2)]
    com = np.array([rng.uniform(150, 250), rng.uniform(150, 250), subject.com_height])  # room position
    n_frames = int(np.floor((seconds - 0.05) * FPS))
    frame_t = np.arange(n_frames) / FPS + 0.02 + rng.normal(0, 0.0015, n_frames)

    # world video: the oracle draws every frame from the true signals at the frame times
    states = _render_video(video_path, scene, lambda tq: true_actions(sig, gloves, tq), frame_t)
    _write_hdf5(h5_path, rng, sig, scene, gloves, com, frame_t, seconds, tactile)
    _write_sidecar(h5_path, scene, frame_t, states, gloves, sig)
    cf_rng = np.random.default_rng([int(seed), int(subject_index), 104729])  # apart: K leaves the source alone
    for k in range(int(counterfactuals)):
        write_counterfactual(Path(out) / COUNTERFACTUAL_DIR / f"{folder_name}_cf{k + 1}", h5_path, cf_rng, sig,
                             scene, gloves, com, frame_t, seconds, tactile)
    return h5_path


def _render_video(video_path: Path, scene: world.Scene, actions_at, frame_t: np.ndarray) -> np.ndarray:
    """Roll the world over the frame times under ``actions_at(times) -> raw actions`` and write the world
    video; returns the state at every frame ``(N, len(STATE_FIELDS))``."""
    n_frames = len(frame_t)
    states = np.empty((n_frames, len(world.STATE_FIELDS)), dtype=np.float64)
    state = None
    chunk = 300
    with VideoWriter(video_path, fps=FPS) as vw:
        for a in range(0, n_frames, chunk):
            tq = frame_t[a:a + chunk]
            acts = actions_at(tq)
            if state is None:
                state = world.step(scene, scene.initial_state(scene.segment_at(tq[0])),
                                   {n: acts[n][0] for n in schema.MODALITY_NAMES}, float(tq[0]), 0.0)
            else:  # continue the roll-out across chunks: step into the chunk's first frame
                state = world.step(scene, state, {n: acts[n][0] for n in schema.MODALITY_NAMES}, float(tq[0]),
                                   float(tq[0] - frame_t[a - 1]))
            for k, (st, fr) in enumerate(world.iter_world(scene, state, acts, tq)):
                states[a + k] = st
                vw.append(fr)
            state = states[a + len(tq) - 1]
    return states


def _write_sidecar(h5_path: Path, scene, frame_t, states, gloves, sig) -> None:
    np.savez_compressed(
        oracle_path(h5_path), format=np.array(ORACLE_FORMAT), scene_json=np.array(scene.to_json()),
        counter_texture=scene.counter_texture, wall_texture=scene.wall_texture, frame_times=frame_t,
        states=states, state_fields=np.array(world.STATE_FIELDS),
        gloves=np.stack([np.stack(g) for g in gloves]),  # (2 hands, [pattern, baseline], 32, 32)
        grip_force=interp(sig.t, sig.force, frame_t), grip_tips=interp(sig.t, sig.tips, frame_t))


# ----------------------------------------------------------------------------------------------
# Counterfactual recordings
# ----------------------------------------------------------------------------------------------
COUNTERFACTUAL_DIR = "counterfactual"
CF_GRID_HZ = 30.0  # the edited trajectories live on this grid (the video rate)
CF_WINDOW_S = (1.0, 3.0)  # each edit window lasts this long
CF_EVERY_S = 5.0  # one edit window per this many seconds of recording


def write_counterfactual(folder: Path, source_h5: Path, rng, sig: sc.Signals, scene: world.Scene, gloves, com,
                         frame_t: np.ndarray, seconds: float, tactile: bool) -> Path:
    """One counterfactual variant of a recording: the same scene, initial state, subject and sensor
    models, with the true action trajectories perturbed by the edit families in several windows
    (random family, onset, length, strength and hand), rendered by the oracle and written in the real
    layout. The HDF5's root attribute ``counterfactual`` is JSON ``{"source": <source HDF5 name>,
    "edits": [{"family", "start_s", "end_s", "strength", "side"}, ...]}``."""
    from mmsim_core.synth import edits as ed

    folder.mkdir(parents=True, exist_ok=True)
    h5_path = folder / source_h5.name
    video_path = folder / source_h5.name.replace("_streamLog_actionNet-wearables_", "_").replace(
        ".hdf5", "_eye-tracking-video-world_frame.mp4")
    tg = np.arange(0.0, seconds + 0.6, 1.0 / CF_GRID_HZ)
    raw = true_actions(sig, gloves, tg)  # (G, ...) each, ActionSense units
    families = [f for f in ed.EDIT_FAMILIES if tactile or ed.FAMILY_MODALITY[f] != "hand_force"]
    n_windows = max(1, int(seconds // CF_EVERY_S))
    slots = np.linspace(0.5, seconds - CF_WINDOW_S[1] - 0.2, n_windows + 1)
    edits = []
    for w in range(n_windows):
        family = str(families[int(rng.integers(len(families)))])
        start_s = float(rng.uniform(slots[w], max(slots[w], slots[w + 1] - CF_WINDOW_S[0])))
        end_s = float(min(start_s + rng.uniform(*CF_WINDOW_S), seconds))
        i0, i1 = int(np.searchsorted(tg, start_s)), int(np.searchsorted(tg, end_s))
        if i1 - i0 < 2 * ed.RAMP_STEPS:
            continue
        kw = ed.random_edit_kwargs(rng, family, len(tg), 0)
        other = None
        if family == "hand_pose_swap":  # the hand pose of another moment of the same recording
            shift = int(rng.integers(int(3 * CF_GRID_HZ), max(int(3 * CF_GRID_HZ) + 1, len(tg) - 1)))
            other = np.roll(raw["hand_pose"], shift, axis=0)
        raw = ed.apply_edit(family, raw, i0, end=i1, strength=kw["strength"], side=kw["side"], other=other)
        edits.append({"family": family, "start_s": round(start_s, 4), "end_s": round(end_s, 4),
                      "strength": round(float(kw["strength"]), 4), "side": kw["side"]})
    # the edited trajectories as the world's signals: every sensor samples them as in the source
    body = np.zeros((len(tg), schema.NUM_BODY_SEGMENTS, 3))
    for k, s in enumerate(schema.BODY_POSE_INDICES):
        body[:, s] = raw["body_pose"][:, k]
    fingers = kin.hand_segments(raw["hand_pose"]).astype(np.float64)  # (G, 2, 20, 3)
    cf = sc.Signals(t=tg, body=body, fingers=fingers, hand_rot=interp(sig.t, sig.hand_rot, tg),
                    torso=interp(sig.t, sig.torso, tg), force=interp(sig.t, sig.force, tg),
                    tips=interp(sig.t, sig.tips, tg), emg_env=raw["emg"].astype(np.float64))
    maps = raw["hand_force"]  # (G, 2, 32, 32)

    def actions_at(tq):
        return {"hand_pose": interp(tg, raw["hand_pose"], tq).astype(np.float32),
                "body_pose": interp(tg, raw["body_pose"], tq).astype(np.float32),
                "emg": interp(tg, raw["emg"], tq).astype(np.float32),
                "hand_force": interp(tg, maps, tq).astype(np.float32)}

    states = _render_video(video_path, scene, actions_at, frame_t)
    _write_hdf5(h5_path, rng, cf, scene, gloves, com, frame_t, seconds, tactile, maps=maps)
    with h5py.File(h5_path, "a") as f:
        f.attrs["counterfactual"] = json.dumps({"source": source_h5.name, "edits": edits})
    _write_sidecar(h5_path, scene, frame_t, states, gloves, sig)
    return h5_path


def oracle_path(h5_path: str | Path) -> Path:
    h5_path = Path(h5_path)
    return h5_path.with_name(h5_path.stem + ORACLE_SUFFIX)


def _stream(modality: str, source: int = 0, side: str | None = None) -> tuple[str, str]:
    """``(device, stream)`` a modality is read from (``schema.MODALITIES``): the reader finds what is written."""
    return schema.MODALITIES[modality].sources[source].device_stream(side)


def _write_hdf5(path: Path, rng, sig: sc.Signals, scene: world.Scene, gloves, com, frame_t, seconds, tactile,
                maps: np.ndarray | None = None):
    """``maps``: tactile ADC maps ``(len(sig.t), 2, 32, 32)`` on the signal grid (counterfactuals edit the
    maps themselves); by default they follow from the grip force and fingertip share."""
    t0 = scene.t_start
    with h5py.File(path, "w") as f:
        # Myo: EMG 200 Hz; |emg| has the envelope as its mean (random sign, bounded spread)
        for h, side in enumerate(schema.SIDES):
            te = clock(rng, seconds, 200.0, 0.15)
            env = interp(sig.t, sig.emg_env[:, h], te)
            emg = np.sign(rng.uniform(-1, 1, env.shape)) * env * rng.uniform(0.6, 1.4, env.shape)
            emg = np.clip(np.round(emg), *schema.EMG_RANGE).astype(np.int32)
            myo, _ = _stream("emg", side=side)
            write_stream(f, *_stream("emg", side=side), emg, t0 + te, [f"EMG Channel {c}" for c in range(8)],
                         extra={"time_s_original": (t0 + te - 0.012 + rng.normal(0, 0.0005, len(te))).reshape(-1, 1)})
            ti = clock(rng, seconds, 50.0, 0.1)
            carpus = interp(sig.t, sig.body[:, schema.XSENS_BODY_SEGMENTS.index(f"{side.title()} Hand")], ti)
            acc = np.gradient(np.gradient(carpus, ti, axis=0), ti, axis=0) / 981.0 + np.array([0.0, 0.0, 1.0])
            write_stream(f, myo, "acceleration_g", acc.astype(np.float64), t0 + ti,
                         ["x_g", "y_g", "z_g"])
            rot = _proper(interp(sig.t, sig.hand_rot[:, h], ti))
            write_stream(f, myo, "orientation_quaternion", rotmat_to_quat(rot), t0 + ti,
                         ["w", "x", "y", "z"])
        # tactile gloves: irregular ~20 Hz
        if tactile:
            for h, side in enumerate(schema.SIDES):
                tt = clock(rng, seconds, 20.0, 0.35)
                if maps is None:
                    force, tips = interp(sig.t, sig.force[:, h], tt), interp(sig.t, sig.tips[:, h], tt)
                    clean = tactile_maps(force, tips, *gloves[h])
                else:
                    clean = interp(sig.t, maps[:, h], tt)
                noisy = clean + rng.normal(0, 1.0, (len(tt), 32, 32)).astype(np.float32)
                write_stream(f, *_stream("hand_force", side=side), noisy.astype(np.float32), t0 + tt)
        # Xsens: 23 body + 2 x 20 finger segments at ~60 Hz, CoM fixed (the subject stands at the counter)
        tx = clock(rng, seconds, 60.0, 0.05)
        body = interp(sig.t, sig.body, tx)
        fingers = interp(sig.t, sig.fingers, tx)
        carpi = body[:, [schema.XSENS_BODY_SEGMENTS.index("Left Hand"), schema.XSENS_BODY_SEGMENTS.index("Right Hand")]]
        pos = np.concatenate([body, (fingers + carpi[:, :, None]).reshape(len(tx), 40, 3)], 1) + com
        pos += rng.normal(0, 0.004, pos.shape)  # Xsens output is filtered: sub-millimetre jitter
        names = list(schema.XSENS_BODY_SEGMENTS) + [f"{s} {n}" for s in ("Left", "Right")
                                                     for n in schema.XSENS_FINGER_SEGMENTS]
        segments, segments_stream = _stream("body_pose", 0)
        write_stream(f, segments, segments_stream, pos.astype(np.float32), t0 + tx,
                     [f"{n} ({a})" for n in names for a in "xyz"])
        torso = interp(sig.t, sig.torso, tx)
        from mmsim_core.synth.kinematics import _rot_x, _rot_z

        r_torso = _rot_z(torso[:, 1]) @ _rot_x(-torso[:, 0])
        q_body = np.repeat(rotmat_to_quat(r_torso)[:, None], schema.NUM_BODY_SEGMENTS, 1)
        q_hands = [np.repeat(rotmat_to_quat(_proper(interp(sig.t, sig.hand_rot[:, h], tx)))[:, None], 20, 1)
                   for h in range(2)]
        write_stream(f, segments, "orientation_quaternion",
                     np.concatenate([q_body] + q_hands, 1).astype(np.float32), t0 + tx,
                     [f"{n} ({a})" for n in names for a in "wxyz"])
        write_stream(f, *_stream("body_pose", 1), np.repeat(com[None], len(tx), 0).astype(np.float32), t0 + tx,
                     ["x", "y", "z"])
        joints = np.zeros((len(tx), 22, 3), np.float32)
        joints[:, 0:4, 0] = np.rad2deg(torso[:, 0:1]) / 4  # spine flexion shared over 4 joints
        joints[:, 4:6, 0] = np.rad2deg(torso[:, 2:3]) / 2  # neck/head nod
        joints[:, 4:6, 1] = np.rad2deg(torso[:, 3:4]) / 2
        joints[:, 0, 2] = np.rad2deg(torso[:, 1])
        for j, side in ((9, "Right"), (13, "Left")):  # elbow flexion from the arm geometry
            i = schema.XSENS_BODY_SEGMENTS.index
            u = body[:, i(f"{side} Forearm")] - body[:, i(f"{side} Upper Arm")]
            v = body[:, i(f"{side} Hand")] - body[:, i(f"{side} Forearm")]
            cosang = (u * v).sum(-1) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-6)
            joints[:, j, 0] = np.rad2deg(np.arccos(np.clip(cosang, -1, 1)))
        write_stream(f, "xsens-joints", "rotation_xzy_deg", joints, t0 + tx)
        # gaze: fixations near the middle of the view with saccades
        tg = clock(rng, seconds, 120.0, 0.1)
        gaze = np.array([0.5, 0.55]) + sc.smooth_noise(rng, tg, 0.35, 0.06, 2)
        write_stream(f, "eye-tracking-gaze", "position", np.clip(gaze, 0, 1), t0 + tg, ["x", "y"])
        # world camera frame timestamps (one per mp4 frame)
        write_stream(f, VIDEO_DEVICE, VIDEO_STREAM, (t0 + frame_t).reshape(-1, 1),
                     t0 + frame_t + 0.004)  # logged a few ms after capture
        # activity labels
        rows, times = [], []
        for seg in scene.segments:
            for kind, tt in (("Start", seg.act_t0), ("Stop", seg.act_t1)):
                rows.append([seg.activity.encode(), kind.encode(), seg.rating.encode(), seg.notes.encode()])
                times.append(t0 + tt)
        write_stream(f, ACTIVITY_DEVICE, ACTIVITY_STREAM, np.array(rows, dtype="S500"), np.array(times),
                     ["Activity", "Start/Stop", "Valid", "Notes"])


# ----------------------------------------------------------------------------------------------
# Many recordings
# ----------------------------------------------------------------------------------------------
def _worker(args) -> str:
    out, i, seconds, seed, tactile, activities, counterfactuals, in_pool = args
    if in_pool:  # one process per core already; OpenCV's own threads would only contend
        import cv2

        cv2.setNumThreads(1)
    return str(generate_recording(out, i, seconds, seed, tactile, activities, counterfactuals))


def generate_dataset(out: str | Path, subjects: int = 6, seconds: float = 120.0, seed: int = 0,
                     workers: int | None = None, tactile: bool | Sequence[bool] = True,
                     activities: Sequence[str] | None = None, counterfactuals: int = 0) -> list[Path]:
    """Synthetic recordings in the ActionSense layout, one per subject (S00, S01, ...), in parallel.

    ``out/<date>_experiment_SXX/<date>_<time>_streamLog_actionNet-wearables_SXX.hdf5`` plus the world
    video ``<date>_<time>_SXX_eye-tracking-video-world_frame.mp4`` and the oracle sidecar
    ``<hdf5 stem>.oracle.npz`` beside it. Deterministic per ``seed``. ``tactile=False`` (or a per-subject
    list) leaves the tactile gloves out, as in some real recordings. ``activities`` fixes every subject's
    activity order (see :func:`generate_recording`). ``counterfactuals`` K also writes, per recording, K
    variants with the same scene and initial state and edited actions under ``out/counterfactual/``
    (same subject; root attribute ``counterfactual``); only the observational HDF5s are returned.
    """
    if not isinstance(subjects, (int, np.integer)) or subjects < 1:
        raise SynthConfigError(f"subjects must be a positive integer, got {subjects!r}")
    if not seconds >= 4.0:
        raise SynthConfigError(f"seconds must be at least 4, got {seconds!r}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise SynthConfigError(f"workers must be a positive integer or None, got {workers!r}")
    if not isinstance(counterfactuals, (int, np.integer)) or counterfactuals < 0:
        raise SynthConfigError(f"counterfactuals must be a non-negative integer, got {counterfactuals!r}")
    flags = list(tactile) if isinstance(tactile, (list, tuple)) else [bool(tactile)] * subjects
    if len(flags) != subjects:
        raise SynthConfigError(f"tactile list must have one entry per subject ({subjects}), got {len(flags)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = min(workers or os.cpu_count() or 1, subjects)
    acts = tuple(activities) if activities else None
    for a in acts or ():
        if a not in sc.ACTIVITIES:
            raise SynthConfigError(f"activity must be one of {list(sc.ACTIVITIES)}, got {a!r}")
    jobs = [(str(out), i, float(seconds), int(seed), flags[i], acts, int(counterfactuals), n > 1)
            for i in range(subjects)]
    if n == 1:
        paths = [_worker(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=n) as ex:
            paths = list(ex.map(_worker, jobs))
    logger.info("wrote %d synthetic recordings to %s", len(paths), out)
    return [Path(p) for p in paths]
