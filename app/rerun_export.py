"""A clip, its action signals and the model's prediction as a Rerun recording (``.rrd``), to open in the
Rerun viewer (``rerun clip.rrd``). Needs the optional ``rerun-sdk`` package (``pip install "mmsim[rerun]"``).

Timeline ``step`` (0..h+F-1). Entities: ``frames/ground_truth``, ``frames/prediction`` (context steps show
the context), ``frames/world`` (synthetic clips with an oracle), ``emg/{L,R}{1..8}`` (raw envelope units
when statistics are known), ``hand_force/{side}_{total,fingers,palm}`` (taxel sums),
``hand_force/{side}/map`` (32x32 per step), ``hand_pose/{side}`` and ``body_pose`` as 3-D points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmsim.app.clip import Clip
from mmsim.app.edits import FORCE_REGIONS, control_measure
from mmsim_core import schema
from mmsim_core.errors import MMSimError


def _raw(name: str, arr: np.ndarray, stats) -> np.ndarray:
    try:
        return schema.denormalize(name, arr, stats)
    except KeyError:
        return arr


def write_recording(path: str | Path, clip: Clip, prediction: np.ndarray | None, stats=None,
                    world: np.ndarray | None = None, app_id: str = "mmsim_studio") -> Path:
    try:
        import rerun as rr
    except ImportError:
        raise MMSimError("Rerun export needs the rerun-sdk package: pip install 'mmsim[rerun]'") from None
    path = Path(path)
    rec = rr.RecordingStream(app_id)
    rec.save(str(path))
    T, h = clip.num_steps, clip.h
    truth = clip.truth_frames()
    rec.log("clip", rr.TextDocument(f"{clip.label}\n\nedits: {len(clip.edits.recipe)}\n"
                                    f"text: {clip.text_condition('sentence')}"), static=True)
    acts = clip.actions
    for t in range(T):
        rec.set_time("step", sequence=t)
        if truth is not None:
            rec.log("frames/ground_truth", rr.Image(truth[t]))
        elif t < h:
            rec.log("frames/ground_truth", rr.Image(clip.context[t]))
        if prediction is not None:
            rec.log("frames/prediction", rr.Image(clip.context[t] if t < h else prediction[t - h]))
        if world is not None and t >= h:
            rec.log("frames/world", rr.Image(world[t - h]))
        if "emg" in acts:
            raw = _raw("emg", acts["emg"][t], stats)
            for s, side in enumerate("LR"):
                for c in range(raw.shape[1]):
                    rec.log(f"emg/{side}{c + 1}", rr.Scalars(float(raw[s, c])))
        if "hand_force" in acts:
            for s, side in enumerate(schema.SIDES):
                rec.log(f"hand_force/{side}/map", rr.Image(acts["hand_force"][t, s].astype(np.float32)))
                for region in FORCE_REGIONS:
                    v = control_measure({"hand_force": acts["hand_force"][t:t + 1]}, "hand_force", f"{side} {region}")
                    rec.log(f"hand_force/{side}_{region}", rr.Scalars(float(v[0])))
        if "hand_pose" in acts:
            raw = _raw("hand_pose", acts["hand_pose"][t], stats)
            for s, side in enumerate(schema.SIDES):
                rec.log(f"hand_pose/{side}", rr.Points3D(raw[s], radii=0.3))
        if "body_pose" in acts:
            rec.log("body_pose", rr.Points3D(_raw("body_pose", acts["body_pose"][t], stats), radii=1.0))
    rec.flush()
    rec.disconnect()
    return path


__all__ = ["write_recording"]
