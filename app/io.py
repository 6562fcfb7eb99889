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

Limits (module constants, checked from file headers before anything is decoded; each message names the limit
and the file's value): 200 MB per upload (800 MB for a raw recording and its video), a context video of at
most 9000 frames and 600 s, images up to 40 megapixels, trajectories and stored frames up to 1000 steps,
recordings up to 4 h, normalised values within 100 training-range widths. An upload's own name is only ever
shown (without the server folder it was stored in), never used to build a path.

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

# Upload limits. Each one is checked from headers before anything is decoded, so a file that claims to hold
# more than this (a decompression bomb, a feature film given as context) costs neither memory nor minutes.
MAX_UPLOAD_MB = 200.0
"""Largest clip, image or context-video upload (MB)."""
MAX_RECORDING_MB = 4 * MAX_UPLOAD_MB
"""Largest raw recording HDF5 or world video (MB): whole recordings are long."""
MAX_VIDEO_FRAMES = 9000
"""Most frames a context video may have (only the first h + F are used)."""
MAX_VIDEO_SECONDS = 600.0
"""Longest context video (s)."""
MAX_RECORDING_SECONDS = 4 * 3600.0
"""Longest raw recording (s, first to last world-video frame)."""
MAX_RECORDING_FRAMES = 500_000
"""Most world-video frames a raw recording may have (4 h at 30 fps is 432,000)."""
MAX_IMAGE_PIXELS = 40_000_000
"""Largest context image (pixels) decoded before it is cropped and resized to the model's size."""
MAX_TRAJECTORY_STEPS = 1000
"""Most time steps an uploaded trajectory or frame array may have (a clip has h + F)."""
MAX_FRAME_SIDE = 1024
"""Largest side of frames stored in a trajectory file."""
MAX_NORMALIZED = 100.0
"""Uploaded min-max normalised values beyond [-100, 101] (100 times the training range's width beyond it,
e.g. EMG given x1000 or raw values labelled normalised) are refused; milder excursions are flagged."""
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm")


class UploadError(MMSimError):
    """An upload the studio cannot use; the message names the file and what is wrong, on one line (an
    upload's name may hold line breaks: they are shown escaped)."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


_H5_DAMAGE = (OSError, KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError)
"""What h5py and numpy raise on a damaged file's structure (a flipped byte in an object header, say)."""


def _gist(e: Exception) -> str:
    text = str(e).strip("'\"").splitlines()[0][:160] if str(e) else "unreadable"
    return f"{type(e).__name__}: {text}"


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
    """The file exists and is at most ``max_mb``. Only the name (never the folder Gradio stored it in) is
    shown: the upload's own name is text for messages, never a path the studio opens or writes."""
    if not path.is_file():
        raise UploadError(f"{path.name}: file not found")
    mb = path.stat().st_size / 2**20
    if mb > max_mb:
        raise UploadError(f"{path.name} is {mb:.1f} MB; uploads are limited to {max_mb:.0f} MB")
    if path.stat().st_size == 0:
        raise UploadError(f"{path.name} is empty (0 bytes)")


def check_video_limits(path: Path, max_frames: int = MAX_VIDEO_FRAMES, max_seconds: float = MAX_VIDEO_SECONDS,
                       what: str = "videos") -> dict:
    """Frame count and duration from the container header, before any frame is decoded."""
    from mmsim_core.errors import RecordingError
    from mmsim_core.video import video_info

    try:
        info = video_info(path)
    except RecordingError:
        raise UploadError(f"{path.name}: not a readable video") from None
    frames, fps = info["frames"], info["fps"]
    if frames > max_frames:
        raise UploadError(f"{path.name} has {frames} frames; {what} are limited to {max_frames} frames")
    if fps > 0 and frames / fps > max_seconds:
        raise UploadError(f"{path.name} lasts {frames / fps:.0f} s; {what} are limited to {max_seconds:.0f} s")
    return info


def check_image_limits(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Image size from the header (PIL reads it without decoding the pixels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError(f"{path.name}: not a readable image") from None
    if w * h > max_pixels:
        raise UploadError(f"{path.name} is {w}x{h} pixels; images are limited to {max_pixels / 1e6:.0f} megapixels")


# ----------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------
def read_image(path: Path, size: int) -> np.ndarray:
    import cv2

    from mmsim_core.video import center_crop_resize

    check_image_limits(path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise UploadError(f"{path.name}: not a readable image")
    return center_crop_resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size)


def load_frames(files, size: int = schema.FRAME_SIZE, context: int = schema.CONTEXT_FRAMES,
                future: int = schema.FUTURE_FRAMES) -> tuple[np.ndarray, np.ndarray | None]:
    """``files``: h images, or one video. Returns (context (h,S,S,3), future (F,S,S,3) or None)."""
    from mmsim_core.errors import RecordingError

    paths = [_path(f) for f in (files if isinstance(files, (list, tuple)) else [files])]
    if len(paths) > 16:
        raise UploadError(f"give {context} context images or one video, not {len(paths)} files")
    for p in paths:
        check_size(p)
    if len(paths) == 1 and paths[0].suffix.lower() in VIDEO_EXTS:
        check_video_limits(paths[0])
        try:
            frames = _first_frames(paths[0], context + future, size)
        except RecordingError:
            raise UploadError(f"{paths[0].name}: not a readable video (no decodable frames)") from None
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


def _first_frames(path: Path, n: int, size: int) -> np.ndarray:
    """The first ``n`` frames of a video, centre-cropped and resized (the rest is never decoded)."""
    from itertools import islice

    from mmsim_core.errors import RecordingError
    from mmsim_core.video import center_crop_resize, iter_video_frames

    frames = [center_crop_resize(f, size) for f in islice(iter_video_frames(path), n)]
    if not frames:
        raise RecordingError(path, "video has no decodable frames")
    return np.stack(frames)


# ----------------------------------------------------------------------------------------------
# Trajectories
# ----------------------------------------------------------------------------------------------
def _check_actions(actions: Mapping[str, np.ndarray], where: str, steps: int | None = None) -> dict:
    if not actions:
        raise UploadError(f"{where}: no action modality found (expected some of {list(schema.MODALITIES)})")
    for name, arr in actions.items():
        kind = np.asarray(arr).dtype.kind
        if kind not in "biuf":
            raise UploadError(f"{where}: {name} must hold numbers, got dtype {np.asarray(arr).dtype}")
    return schema.check_action_arrays(actions, where, steps=steps, allow_flat=True, error=UploadError)


def _check_magnitude(actions: Mapping[str, np.ndarray], where: str, limit: float = MAX_NORMALIZED) -> None:
    """Refuse values far outside anything the model was trained on (wrong units, a slip of x1000)."""
    for name, arr in actions.items():
        spec = schema.MODALITIES[name]  # min-max and fixed-clip modalities alike are 0..1 when normalised
        if arr.size == 0:
            continue
        worst = float(max(arr.max() - 1.0, -arr.min()))
        if worst > limit:
            raise UploadError(f"{where}: {spec.display_name} reaches {worst:.3g} times the training range's width "
                              f"beyond it; uploads are limited to {limit:.0f} (wrong units? raw values need "
                              f"units='raw')")


def _check_array_header(shape: tuple, dtype, name: str, where: str) -> None:
    """Bound one clip's array from its header before reading it (an HDF5 or NPZ can claim any size).
    ``shape``: (T, *shape) for a modality, (T, H, W, 3) for frames."""
    shape = tuple(int(d) for d in shape)
    if name == "frames":
        if len(shape) != 4 or shape[-1] != 3 or max(shape[1:3]) > MAX_FRAME_SIDE:
            raise UploadError(f"{where}: frames must be uint8 (T, H, W, 3) with sides up to {MAX_FRAME_SIDE}, "
                              f"got shape {shape}")
        if np.dtype(dtype) != np.uint8:
            raise UploadError(f"{where}: frames must be uint8, got dtype {dtype}")
    else:
        spec = schema.MODALITIES[name]
        if len(shape) < 2 or int(np.prod(shape)) > shape[0] * spec.size:
            raise UploadError(f"{where}: {name} must have shape (T, {', '.join(map(str, spec.shape))}), got {shape}")
        if np.dtype(dtype).kind not in "biuf":
            raise UploadError(f"{where}: {name} must hold numbers, got dtype {dtype}")
    if shape[0] > MAX_TRAJECTORY_STEPS:
        raise UploadError(f"{where}: {name} has {shape[0]} steps; uploads are limited to {MAX_TRAJECTORY_STEPS} "
                          f"steps (a clip has {schema.CLIP_FRAMES})")


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
    _check_magnitude(actions, where)
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
    try:
        with f:
            return _read_h5_file(f, path)
    except UploadError:
        raise
    except _H5_DAMAGE as e:
        # A damaged file or one in another layout: h5py raises many kinds; the user needs the file and the gist.
        raise UploadError(f"{path.name}: damaged or not a clip file ({_gist(e)})") from None


def _read_h5_file(f, path: Path) -> dict:
    import h5py

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
        if not isinstance(arr, h5py.Dataset):
            raise UploadError(f"{path.name}: actions/{name} must be an array, not a group")
        shard = arr.ndim == len(schema.MODALITIES[name].shape) + 2  # shard: (N, T, *shape)
        _check_array_header(arr.shape[1:] if shard else arr.shape, arr.dtype, name, path.name)
        if shard:
            if len(arr) == 0:
                raise UploadError(f"{path.name}: actions/{name} holds no clip")
            if f"present/{name}" in f and not bool(f[f"present/{name}"][row]):
                continue
            arr = arr[row]
        else:
            arr = arr[()]
        actions[name] = arr
    if "frames" in f:
        fr = f["frames"]
        if not isinstance(fr, h5py.Dataset):
            raise UploadError(f"{path.name}: frames must be an array, not a group")
        shard = fr.ndim == 5
        _check_array_header(fr.shape[1:] if shard else fr.shape, fr.dtype, "frames", path.name)
        if shard and len(fr) == 0:
            raise UploadError(f"{path.name}: frames holds no clip")
        frames = np.asarray(fr[row] if shard else fr[()], dtype=np.uint8)
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
    if not isinstance(meta, dict):
        meta = {}
    units = str(f.attrs.get("units", "normalized"))
    return {"actions": actions, "frames": frames, "text": text, "meta": meta, "units": units}


def _read_npz(path: Path) -> dict:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise UploadError(f"{path.name}: not a readable .npz file ({type(e).__name__})") from None
    try:
        with z:
            keys = list(z.keys())
            unknown = [k for k in keys if k not in schema.MODALITIES and k not in ("frames", "units", "text")]
            if unknown:
                raise UploadError(f"{path.name}: unknown arrays {unknown}; name them after modalities "
                                  f"{list(schema.MODALITIES)} (plus optional 'frames', 'units')")
            for k in keys:
                shape, dtype = _npz_header(z, k)
                if k in ("units", "text"):
                    if dtype.kind not in "US" or int(np.prod(shape)) != 1:
                        raise UploadError(f"{path.name}: {k} must be one string, got dtype {dtype} shape {shape}")
                else:
                    _check_array_header(shape, dtype, k, path.name)
            actions = {k: z[k] for k in keys if k in schema.MODALITIES}
            frames = np.asarray(z["frames"], dtype=np.uint8) if "frames" in keys else None
            units = str(z["units"]) if "units" in keys else "normalized"
            text = {"sentence": str(z["text"])} if "text" in keys else {}
    except UploadError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile, zlib.error, npy header errors: a damaged archive
        raise UploadError(f"{path.name}: damaged .npz file ({type(e).__name__})") from None
    return {"actions": actions, "frames": frames, "text": text, "meta": {}, "units": units}


def _npz_header(z, key: str) -> tuple[tuple, np.dtype]:
    """Shape and dtype of one array in an NPZ from its .npy header, without decompressing the data."""
    with z.zip.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f, max_header_size=10_000)
    return tuple(shape), np.dtype(dtype)


def _read_csv(path: Path) -> dict:
    try:
        raw = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UploadError(f"{path.name}: not a readable text CSV ({type(e).__name__})") from None
    if raw.count("\n") > MAX_TRAJECTORY_STEPS + 1:
        raise UploadError(f"{path.name} has {raw.count(chr(10)) - 1} rows; uploads are limited to "
                          f"{MAX_TRAJECTORY_STEPS} steps (a clip has {schema.CLIP_FRAMES})")
    try:
        rows = list(csv.reader(_io.StringIO(raw)))
    except csv.Error as e:
        raise UploadError(f"{path.name}: not a readable CSV ({e})") from None
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
    annotations = traj["meta"].get("annotations", [])
    for a in annotations if isinstance(annotations, list) else []:
        try:
            clip.annotations.append(Annotation.from_dict(a))
        except (TypeError, ValueError, KeyError, AttributeError):
            raise UploadError(f"{_path(trajectory_file).name}: meta annotations are not the studio's "
                              f"(activity, start, end ...) records") from None
    return clip


# ----------------------------------------------------------------------------------------------
# Raw ActionSense recordings
# ----------------------------------------------------------------------------------------------
def _upload_names(message: str, *paths: Path) -> str:
    """A reader's message with the server folders of uploaded files cut down to the files' names."""
    for p in paths:
        if p is not None:
            message = message.replace(str(Path(p).resolve()), Path(p).name).replace(str(p), Path(p).name)
    return message


class RawRecording:
    """A raw recording opened for cutting clips: frame times, activities, and clip extraction."""

    def __init__(self, hdf5_file, video_file=None):
        from mmsim_core.data import ActionSenseRecording
        from mmsim_core.errors import RecordingError

        self.path = _path(hdf5_file)
        check_size(self.path, max_mb=MAX_RECORDING_MB)
        # The video is always the one uploaded with it: never searched for beside the upload (the folder an
        # upload lands in is the server's, and what else lies there is not this user's).
        if not video_file:
            raise UploadError(f"{self.path.name}: upload its world video (eye-tracking-video-world .mp4) too")
        video = _path(video_file)
        check_size(video, max_mb=MAX_RECORDING_MB)
        check_video_limits(video, MAX_RECORDING_FRAMES, MAX_RECORDING_SECONDS, what="recording videos")
        try:
            self.rec = ActionSenseRecording(self.path, video_path=video)
            self.frame_t = self.rec.frame_times()
            self.rec.check_video()
            self.activities = self.rec.activities(include_maybe=True)
            self.modalities = self.rec.available_modalities()
        except RecordingError as e:
            raise UploadError(_upload_names(str(e), self.path, video)) from None
        except _H5_DAMAGE as e:  # h5py's own errors from a damaged file that the reader does not name
            raise UploadError(f"{self.path.name}: not a readable recording ({_gist(e)})") from None
        if len(self.frame_t) < schema.CLIP_FRAMES:
            raise UploadError(f"{self.path.name}: only {len(self.frame_t)} video frames")
        if len(self.frame_t) > MAX_RECORDING_FRAMES:
            raise UploadError(f"{self.path.name} has {len(self.frame_t)} frame timestamps; recordings are limited "
                              f"to {MAX_RECORDING_FRAMES} frames")
        self.t0 = float(self.frame_t[0])
        if self.duration_s > MAX_RECORDING_SECONDS:
            raise UploadError(f"{self.path.name} lasts {self.duration_s:.0f} s; recordings are limited to "
                              f"{MAX_RECORDING_SECONDS:.0f} s")

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
            raise UploadError(_upload_names(str(e), self.path, self.rec.video_path)) from None
        except _H5_DAMAGE as e:
            raise UploadError(f"{self.path.name}: not a readable recording at {start_s:.2f} s ({_gist(e)})") from None
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
                generator: str | None = None, source_label: str | None = None, extra: Mapping | None = None) -> Path:
    """The clip as a one-clip shard whose frames are those its actions produced.

    ``prefer="prediction"`` (an edited clip: the recorded future shows the unedited actions) pairs the
    actions with ``prediction``; ``"recorded"`` uses the recorded future when there is one. Without either,
    the last context frame is repeated. ``meta["future_source"]`` says which, ``meta["units"]`` the units;
    ``extra`` adds keys to the meta (e.g. which proposal the actions are)."""
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
    info = {"future_source": src, "units": UNITS_NOTE, "edited": bool(clip.edits.is_edited()), **(extra or {})}
    return write_shard(path, [(frames, clip.actions, text, _clip_meta(clip, info))], mods)


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
