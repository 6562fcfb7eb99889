"""Reading what users upload and writing what they export.

Uploads:
* context frames: 4 images, or a video (the first h frames are the context; the next F, when present,
  are ground truth); centre-cropped and resized like ``mmsim preprocess`` does;
* trajectories (normalised clip values unless said otherwise):
  - clip HDF5 in the project's schema: a ``mmsim preprocess`` shard or a studio export
    (``actions/<name>`` (N, T, *shape) or (T, *shape), optional ``frames``, ``present/<name>``, ``text/<kind>``);
  - NPZ: arrays named after modalities, (T, *shape); optional ``frames`` (T or h, H, W, 3) uint8 and
    ``units`` = "raw" (then values are normalised with the checkpoint's statistics);
  - CSV: one row per time step, columns ``<modality>_<i>`` for every flat feature i of a modality
    (e.g. ``emg_0`` .. ``emg_15``), optional first column ``step``;
* a raw ActionSense recording (HDF5 + its world video) and a start time: cut one clip with the same
  alignment as preprocessing.

Exports: a clip HDF5 in shard format (so ``ClipDataset`` reads a folder of them via a manifest), the
generated MP4, and augmentation datasets (manifest + normalisation statistics + shards).
"""

from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mmsim.app.clip import Annotation, Clip
from mmsim.app.edits import EditHistory
from mmsim_core import schema
from mmsim_core.data.shards import SPLITS, STATS_NAME, ClipShardWriter, write_clip_shard, write_manifest
from mmsim_core.errors import ActionInputError, MMSimError

MAX_UPLOAD_MB = 200.0
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm")


class UploadError(MMSimError):
    """An upload the studio cannot use; the message names the file and what is wrong."""


def _path(f) -> Path:
    """Gradio gives str paths (or objects with ``.name``/``path``)."""
    if f is None:
        raise UploadError("no file given")
    if isinstance(f, Mapping):
        f = f.get("path") or f.get("name")
    if isinstance(f, (str, Path)):
        return Path(f)
    return Path(getattr(f, "path", None) or getattr(f, "name", f))


def check_size(path: Path, max_mb: float = MAX_UPLOAD_MB) -> None:
    if not path.is_file():
        raise UploadError(f"{path.name}: file not found")
    mb = path.stat().st_size / 2**20
    if mb > max_mb:
        raise UploadError(f"{path.name} is {mb:.0f} MB; uploads are limited to {max_mb:.0f} MB")


# ----------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------
def read_image(path: Path, size: int) -> np.ndarray:
    import cv2

    from mmsim_core.video import center_crop_resize

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UploadError(f"{path.name}: not a readable image")
    return center_crop_resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size)


def load_frames(files, size: int = schema.FRAME_SIZE, context: int = schema.CONTEXT_FRAMES,
                future: int = schema.FUTURE_FRAMES) -> tuple[np.ndarray, np.ndarray | None]:
    """``files``: h images, or one video. Returns (context (h,S,S,3), future (F,S,S,3) or None)."""
    from mmsim_core.errors import RecordingError
    from mmsim_core.video import read_video

    paths = [_path(f) for f in (files if isinstance(files, (list, tuple)) else [files])]
    for p in paths:
        check_size(p)
    if len(paths) == 1 and paths[0].suffix.lower() in VIDEO_EXTS:
        try:
            frames = read_video(paths[0], size=size)
        except RecordingError as e:
            raise UploadError(f"{paths[0].name}: {e}") from None
        if len(frames) < context:
            raise UploadError(f"{paths[0].name} has {len(frames)} frames; at least {context} are needed")
        fut = frames[context:context + future] if len(frames) >= context + future else None
        return frames[:context], fut
    bad = [p.name for p in paths if p.suffix.lower() not in IMAGE_EXTS]
    if bad:
        raise UploadError(f"context frames must be {context} images ({', '.join(IMAGE_EXTS)}) or one video "
                          f"({', '.join(VIDEO_EXTS)}); cannot use {bad}")
    if len(paths) != context:
        raise UploadError(f"give exactly {context} context images (got {len(paths)}), in time order")
    paths = sorted(paths, key=lambda p: p.name)
    return np.stack([read_image(p, size) for p in paths]), None


# ----------------------------------------------------------------------------------------------
# Trajectories
# ----------------------------------------------------------------------------------------------
def _check_actions(actions: Mapping[str, np.ndarray], where: str, steps: int | None = None) -> dict:
    if not actions:
        raise UploadError(f"{where}: no action modality found (expected some of {list(schema.MODALITIES)})")
    return schema.check_action_arrays(actions, where, steps=steps, allow_flat=True, error=UploadError)


def _to_normalized(actions: dict, units: str, stats, where: str) -> dict:
    if units == "normalized":
        return actions
    if units != "raw":
        raise UploadError(f"{where}: units must be 'normalized' or 'raw', got {units!r}")
    try:
        return {k: schema.normalize(k, v, stats) for k, v in actions.items()}
    except KeyError as e:
        raise UploadError(f"{where}: raw values need normalisation statistics: {e}") from None


def read_trajectories(file, stats=None, steps: int = schema.CLIP_FRAMES) -> dict:
    """Parse a trajectory upload. Returns ``{"actions": {...}, "frames": uint8 or None, "text": {...}, "meta": {...}}``."""
    path = _path(file)
    check_size(path)
    ext = path.suffix.lower()
    where = path.name
    if ext in (".h5", ".hdf5"):
        res = _read_h5(path)
    elif ext == ".npz":
        res = _read_npz(path)
    elif ext == ".csv":
        res = _read_csv(path)
    else:
        raise UploadError(f"{where}: trajectories must be a clip .h5/.hdf5, .npz or .csv file")
    actions = _check_actions(res["actions"], where)
    actions = _to_normalized(actions, res.get("units", "normalized"), stats, where)
    T = next(iter(actions.values())).shape[0]
    if T != steps:
        raise UploadError(f"{where}: trajectories have {T} steps; this model needs {steps} (h + F)")
    res["actions"] = actions
    return res


def _read_h5(path: Path) -> dict:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UploadError(f"{path.name}: not a readable HDF5 file ({e})") from None
    with f:
        if "actions" not in f and "experiment-activities" in f:
            raise UploadError(f"{path.name} is a raw ActionSense recording: load it under 'Raw recording' "
                              f"with its world video and a start time")
        if "actions" not in f or not isinstance(f["actions"], h5py.Group):
            raise UploadError(f"{path.name}: no 'actions' group (expected a clip file in the project's schema: "
                              f"actions/<modality> (N, T, *shape))")
        unknown = [k for k in f["actions"] if k not in schema.MODALITIES]
        if unknown:
            raise UploadError(f"{path.name}: unknown modalities {unknown} in actions/")
        row = 0
        actions, frames = {}, None
        for name in f["actions"]:
            arr = f["actions"][name]
            if arr.ndim == len(schema.MODALITIES[name].shape) + 2:  # shard: (N, T, *shape)
                if f"present/{name}" in f and not bool(f[f"present/{name}"][row]):
                    continue
                arr = arr[row]
            else:
                arr = arr[()]
            actions[name] = arr
        if "frames" in f:
            frames = f["frames"][row] if f["frames"].ndim == 5 else f["frames"][()]
            frames = np.asarray(frames, dtype=np.uint8)
        text = {}
        if "text" in f:
            for k in schema.TEXT_KINDS:
                if k in f["text"]:
                    v = f["text"][k].asstr()[()]
                    text[k] = str(v[row] if np.ndim(v) else v)
        meta = {}
        if "meta" in f:
            m = f["meta"].asstr()[()]
            try:
                meta = json.loads(m[row] if np.ndim(m) else m)
            except (ValueError, IndexError):
                meta = {}
        units = str(f.attrs.get("units", "normalized"))
    return {"actions": actions, "frames": frames, "text": text, "meta": meta, "units": units}


def _read_npz(path: Path) -> dict:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise UploadError(f"{path.name}: not a readable .npz file ({type(e).__name__})") from None
    with z:
        keys = list(z.keys())
        unknown = [k for k in keys if k not in schema.MODALITIES and k not in ("frames", "units", "text")]
        if unknown:
            raise UploadError(f"{path.name}: unknown arrays {unknown}; name them after modalities "
                              f"{list(schema.MODALITIES)} (plus optional 'frames', 'units')")
        actions = {k: z[k] for k in keys if k in schema.MODALITIES}
        frames = np.asarray(z["frames"], dtype=np.uint8) if "frames" in keys else None
        units = str(z["units"]) if "units" in keys else "normalized"
        text = {"sentence": str(z["text"])} if "text" in keys else {}
    return {"actions": actions, "frames": frames, "text": text, "meta": {}, "units": units}


def _read_csv(path: Path) -> dict:
    try:
        raw = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UploadError(f"{path.name}: not a readable text CSV ({type(e).__name__})") from None
    rows = list(csv.reader(_io.StringIO(raw)))
    if len(rows) < 2:
        raise UploadError(f"{path.name}: needs a header row and one row per time step")
    header = [h.strip() for h in rows[0]]
    try:
        data = np.array([[float(x) for x in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as e:
        raise UploadError(f"{path.name}: non-numeric value ({e})") from None
    if data.ndim != 2 or data.shape[1] != len(header):
        raise UploadError(f"{path.name}: every row must have {len(header)} values like the header")
    cols: dict[str, dict[int, int]] = {}
    units = "normalized"
    for j, h in enumerate(header):
        if h in ("step", "t", "time"):
            continue
        if h == "units_raw":
            units = "raw" if data[:, j].any() else "normalized"
            continue
        name, _, idx = h.rpartition("_")
        if name not in schema.MODALITIES or not idx.isdigit():
            raise UploadError(f"{path.name}: column {h!r} is not '<modality>_<index>' "
                              f"(modalities {list(schema.MODALITIES)})")
        cols.setdefault(name, {})[int(idx)] = j
    actions = {}
    for name, m in cols.items():
        size = schema.MODALITIES[name].size
        missing = sorted(set(range(size)) - set(m))
        if missing:
            raise UploadError(f"{path.name}: {name} needs columns {name}_0 .. {name}_{size - 1}; "
                              f"missing {len(missing)} (e.g. {name}_{missing[0]})")
        actions[name] = data[:, [m[i] for i in range(size)]].astype(np.float32)
    return {"actions": actions, "frames": None, "text": {}, "meta": {}, "units": units}


def write_csv(path: str | Path, actions: Mapping[str, np.ndarray]) -> Path:
    """The CSV layout :func:`read_trajectories` reads (normalised values)."""
    path = Path(path)
    names = [m for m in schema.MODALITIES if m in actions]
    T = next(iter(actions.values())).shape[0]
    header = ["step"] + [f"{m}_{i}" for m in names for i in range(schema.MODALITIES[m].size)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for t in range(T):
            row = [t] + [f"{v:.6g}" for m in names for v in np.asarray(actions[m][t]).ravel()]
            w.writerow(row)
    return path


def clip_from_upload(frame_files, trajectory_file, stats=None, size: int = schema.FRAME_SIZE,
                     context: int = schema.CONTEXT_FRAMES, future: int = schema.FUTURE_FRAMES) -> Clip:
    """A clip from uploaded frames (optional when the trajectory file carries frames) + trajectories."""
    if trajectory_file is None:
        raise UploadError("upload a trajectory file (clip .h5, .npz or .csv) along with the frames")
    traj = read_trajectories(trajectory_file, stats=stats, steps=context + future)
    fut = None
    if frame_files:
        ctx, fut = load_frames(frame_files, size, context, future)
    elif traj["frames"] is not None:
        fr = traj["frames"]
        if fr.ndim != 4 or fr.shape[1:] != (size, size, 3) or len(fr) < context:
            raise UploadError(f"{_path(trajectory_file).name}: frames must be uint8 (>= {context}, {size}, {size}, 3), "
                              f"got {fr.shape}")
        ctx = fr[:context]
        fut = fr[context:context + future] if len(fr) >= context + future else None
    else:
        raise UploadError(f"upload {context} context images or a video (the trajectory file has no frames)")
    text = {k: traj["text"].get(k, "") for k in schema.TEXT_KINDS}
    clip = Clip(context=ctx, future=fut, edits=EditHistory(traj["actions"]), text=text, meta=dict(traj["meta"]),
                label=f"upload {_path(trajectory_file).name}")
    for a in traj["meta"].get("annotations", []):
        clip.annotations.append(Annotation.from_dict(a))
    return clip


# ----------------------------------------------------------------------------------------------
# Raw ActionSense recordings
# ----------------------------------------------------------------------------------------------
class RawRecording:
    """A raw recording opened for cutting clips: frame times, activities, and clip extraction."""

    def __init__(self, hdf5_file, video_file=None):
        from mmsim_core.data import ActionSenseRecording
        from mmsim_core.errors import RecordingError

        self.path = _path(hdf5_file)
        check_size(self.path, max_mb=4 * MAX_UPLOAD_MB)
        video = _path(video_file) if video_file else None
        if video is not None:
            check_size(video, max_mb=4 * MAX_UPLOAD_MB)
        try:
            self.rec = ActionSenseRecording(self.path, video_path=video)
            self.frame_t = self.rec.frame_times()
            self.rec.check_video()
            self.activities = self.rec.activities(include_maybe=True)
            self.modalities = self.rec.available_modalities()
        except RecordingError as e:
            raise UploadError(str(e)) from None
        except OSError as e:
            raise UploadError(f"{self.path.name}: not a readable recording ({e})") from None
        if len(self.frame_t) < schema.CLIP_FRAMES:
            raise UploadError(f"{self.path.name}: only {len(self.frame_t)} video frames")
        self.t0 = float(self.frame_t[0])

    @property
    def duration_s(self) -> float:
        return float(self.frame_t[-1] - self.t0)

    def activity_at(self, t_abs: float):
        for a in self.activities:
            if a.start_s <= t_abs <= a.stop_s:
                return a
        return None

    def summary(self) -> str:
        acts = "; ".join(f"{a.label} [{a.start_s - self.t0:.1f}-{a.stop_s - self.t0:.1f} s, {a.rating}]"
                         for a in self.activities[:12])
        return (f"{self.path.name}: subject {self.rec.subject}, {self.duration_s:.1f} s, {len(self.frame_t)} frames, "
                f"modalities {list(self.modalities)}. Activities: {acts or 'none'}")

    def cut(self, start_s: float, stats, frame_step: int = 1, size: int = schema.FRAME_SIZE,
            context: int = schema.CONTEXT_FRAMES, future: int = schema.FUTURE_FRAMES) -> Clip:
        """The clip whose first frame is the first video frame at or after ``start_s`` (seconds from the start)."""
        from mmsim_core.data.actionsense import align_modalities
        from mmsim_core.data.preprocess import decode_frames
        from mmsim_core.data.text import describe, force_summary
        from mmsim_core.errors import RecordingError

        T = context + future
        if frame_step < 1:
            raise UploadError(f"frame step must be >= 1, got {frame_step}")
        a = int(np.searchsorted(self.frame_t, self.t0 + float(start_s), side="left"))
        idx = a + np.arange(T) * int(frame_step)
        if start_s < 0 or idx[-1] >= len(self.frame_t):
            latest = self.frame_t[len(self.frame_t) - 1 - (T - 1) * frame_step] - self.t0
            raise UploadError(f"start {start_s:.2f} s is outside the recording: a clip of {T} frames "
                              f"(step {frame_step}) can start between 0 and {latest:.2f} s")
        try:
            values, valid = align_modalities(self.rec, self.frame_t[idx], self.modalities)
            frames = decode_frames(self.rec.video_path, idx, size)
        except RecordingError as e:
            raise UploadError(str(e)) from None
        actions, missing = {}, []
        for m, v in values.items():
            if not valid[m].all():
                missing.append(m)
                continue
            try:
                actions[m] = schema.normalize(m, v, stats)
            except KeyError:
                missing.append(m)
        if not actions:
            raise UploadError(f"no modality has samples at {start_s:.2f} s (missing or gaps: {missing})")
        act = self.activity_at(float(self.frame_t[idx[0]]))
        label = act.label if act else ""
        grip = schema.modality_with_role("grip", actions)
        force = force_summary(values[grip], grip) if grip else None
        text = describe(label, frame_step, force) if label else {k: "" for k in schema.TEXT_KINDS}
        meta = {"subject": self.rec.subject, "activity": label, "source": str(self.path),
                "start_time_s": float(self.frame_t[idx[0]]), "offset_s": float(self.frame_t[idx[0]] - self.t0),
                "frame_step": int(frame_step), "video_frame_indices": [int(i) for i in idx],
                "modalities": list(actions), "missing_modalities": missing}
        return Clip(context=frames[:context], future=frames[context:], edits=EditHistory(actions), text=text,
                    meta=meta, label=f"{self.path.stem[:24]} @ {meta['offset_s']:.2f} s")

    def close(self):
        self.rec.close()


# ----------------------------------------------------------------------------------------------
# Exports
# ----------------------------------------------------------------------------------------------
def _clip_meta(clip: Clip, extra: Mapping | None = None) -> dict:
    meta = {k: v for k, v in clip.meta.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
    meta["annotations"] = [a.to_dict() for a in clip.annotations]
    meta["edit_recipe"] = clip.edits.recipe
    meta["modalities"] = [m for m in schema.MODALITIES if m in clip.actions]
    meta.update(extra or {})
    return meta


def write_shard(path: str | Path, clips: Sequence[tuple[np.ndarray, Mapping, Mapping, Mapping]],
                modalities: Sequence[str]) -> Path:
    """A shard in the format ``mmsim preprocess`` writes. ``clips``: (frames (T,S,S,3), actions, text, meta) each."""
    return write_clip_shard(path, clips, modalities)


UNITS_NOTE = ("actions are normalised clip values: min-max with the dataset's normalization.json for hand_pose "
              "(cm from each Carpus), body_pose (cm from the centre of mass) and emg (raw envelope 0..128); "
              "hand_force 0..1 = tactile ADC 530..600 per taxel")


def export_clip(clip: Clip, path: str | Path, prediction: np.ndarray | None = None, prefer: str = "recorded",
                generator: str | None = None, source_label: str | None = None) -> Path:
    """The clip as a one-clip shard whose frames are those its actions produced.

    ``prefer="prediction"`` (an edited clip: the recorded future shows the unedited actions) pairs the
    actions with ``prediction``; ``"recorded"`` uses the recorded future when there is one. Without either,
    the last context frame is repeated. ``meta["future_source"]`` says which, ``meta["units"]`` the units."""
    if prefer not in ("recorded", "prediction"):
        raise ValueError(f"prefer must be 'recorded' or 'prediction', got {prefer!r}")
    if prefer == "prediction" and prediction is not None:
        future, src = prediction, source_label or f"generated for these actions by {generator or 'the model'}"
    elif clip.future is not None and not (prefer == "prediction" and clip.edits.is_edited()):
        future, src = clip.future, "recorded"
    elif prediction is not None:
        future, src = prediction, source_label or f"generated for these actions by {generator or 'the model'}"
    else:
        future, src = np.repeat(clip.context[-1:], clip.num_steps - clip.h, axis=0), "none (last context frame)"
    frames = np.concatenate([clip.context, future])
    mods = [m for m in schema.MODALITIES if m in clip.actions]
    text = {k: clip.text_condition(k) for k in schema.TEXT_KINDS}
    extra = {"future_source": src, "units": UNITS_NOTE, "edited": bool(clip.edits.is_edited())}
    return write_shard(path, [(frames, clip.actions, text, _clip_meta(clip, extra))], mods)


def write_clip_videos(folder: str | Path, records: Sequence[tuple], names: Sequence[str] | None = None,
                      fps: float = 4.0) -> list[Path]:
    """One MP4 per ``(frames, actions, text, meta)`` record (frames upscaled 4x), named after ``names``."""
    from mmsim_core.evaluation.video import upscale
    from mmsim_core.video import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, rec in enumerate(records):
        name = safe_name(names[i]) if names else f"clip_{i:04d}"
        out.append(write_video(folder / f"{i:04d}_{name}.mp4", upscale(rec[0], 4), fps=fps))
    return out


def write_dataset(out_dir: str | Path, clips: Sequence[tuple[np.ndarray, Mapping, Mapping, Mapping]], stats,
                  split: str = "train", context: int = schema.CONTEXT_FRAMES, shard_size: int = 256,
                  extra: Mapping | None = None) -> dict:
    """A dataset folder ``ClipDataset(out_dir, split)`` reads: manifest.json, normalization.json, shards."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not clips:
        raise MMSimError("no clips to write")
    mods = [m for m in schema.MODALITIES if any(m in c[1] for c in clips)]
    T, S = clips[0][0].shape[0], clips[0][0].shape[1]
    with ClipShardWriter(out, split, mods, shard_size=shard_size) as writer:
        for frames, actions, text, meta in clips:
            writer.add(frames, actions, text, meta)
    stats = stats if stats is not None else schema.NormalizationStats()
    stats.save(out / STATS_NAME)
    splits = {s: {"shards": [], "num_clips": 0, "subjects": [], "modality_clips": {m: 0 for m in mods}}
              for s in SPLITS}
    splits[split] = {"shards": writer.shards, "num_clips": len(clips),
                     "subjects": sorted({str(c[3].get("subject", "")) for c in clips}), "modality_clips": writer.counts}
    manifest = write_manifest(out, {
        "clip": {"context": int(context), "future": T - int(context), "size": S},
        "modalities": mods, "splits": splits, "stats": STATS_NAME,
        "source": "mmsim studio augmentation export", **(extra or {})})
    return manifest


def safe_name(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.strip("_")[:60] or "clip"


def tmp_dir(root: str | Path | None = None) -> Path:
    import tempfile

    base = Path(root) if root else Path(tempfile.gettempdir()) / "mmsim_studio"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=base))


__all__ = ["MAX_UPLOAD_MB", "UploadError", "load_frames", "read_trajectories", "write_csv", "clip_from_upload",
           "RawRecording", "export_clip", "write_clip_videos", "UNITS_NOTE", "write_shard", "write_dataset", "check_size", "tmp_dir", "safe_name",
           ]
