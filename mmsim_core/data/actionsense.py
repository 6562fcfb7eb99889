"""Reader for ActionSense (ActionNet wearables) recordings, exactly as the dataset ships them.

One recording = ``<date>_streamLog_actionNet-wearables_SXX.hdf5`` (device groups -> stream groups ->
``data`` / ``time_s`` / ``time_str``) plus the egocentric world video, an mp4 *beside* the HDF5 whose
name contains ``eye-tracking-video-world``. Frame ``i`` of that video was captured at
``eye-tracking-video-world/frame_timestamp/time_s[i]`` (the system clock every other stream uses).

Everything here reads only; nothing assumes the file was written by this project. Problems with the
input raise :class:`~mmsim_core.errors.RecordingError` naming the file and the stream.

Policies for imperfect input (real recordings have all of these):

* **Non-finite samples.** Rows holding NaN/inf are dropped with a logged warning when they are at
  most ``MAX_BAD_FRACTION`` (5 %) of a stream, so nearest-sample alignment uses their finite
  neighbours; frames farther than ``MAX_GAP_S`` from any finite sample lose that modality (see
  preprocessing). More than 5 % non-finite rows is an error.
* **Timestamps going backwards.** A few small inversions (at most 1 % of steps, none jumping back
  more than ``MAX_BACKSTEP_S``) are sorted away with a warning (jitter in irregular streams such as
  the tactile gloves). Anything more is an error: a clock jump cannot be repaired by sorting. The
  world-video ``frame_timestamp`` stream is never sorted or thinned (its row i is video frame i): any
  non-finite or backward timestamp there is an error.
* **Video length.** The video must have at least as many frames as ``frame_timestamp`` rows (checked
  on the container header, and again while decoding); extra trailing frames are ignored.
* **Activities.** Each ``Start`` row pairs with the next ``Stop`` row of the same label. The rating of
  the pair is the worse of its two rows (ActionNet writes it on both); an empty rating counts as
  ``Good`` (the ActionNet example parser keeps unrated rows too). Unpaired rows are ignored with a
  warning.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mmsim_core import schema
from mmsim_core.errors import RecordingError

logger = logging.getLogger(__name__)

MAX_BAD_FRACTION = 0.05
MAX_BACKSTEP_FRACTION = 0.01
MAX_BACKSTEP_S = 1.0
MAX_GAP_S = 0.25
"""Largest distance in time from a video frame to the stream sample used for it; beyond it the
modality counts as missing at that frame (sensor dropout, device started late)."""

VIDEO_DEVICE = "eye-tracking-video-world"
VIDEO_STREAM = "frame_timestamp"
ACTIVITY_DEVICE = "experiment-activities"
ACTIVITY_STREAM = "activities"
COUNTERFACTUAL_ATTR = "counterfactual"
"""Root attribute marking a counterfactual recording (see ``ActionSenseRecording.counterfactual``)."""
RATING_ORDER = {"Good": 0, "": 0, "Maybe": 1, "Bad": 2}

_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)
"""What h5py raises on a damaged file's structure (a flipped byte in an object header, a B-tree, a heap): KeyError
or RuntimeError opening, testing or listing an object, OSError reading one, TypeError or ValueError (a
UnicodeDecodeError among them) on a datatype or name it cannot decode. Caught only around single h5py calls, so
that a bug of ours in the code around them still surfaces as itself."""

_SUBJECT_RE = re.compile(r"_S(\d+)\.hdf5$", re.IGNORECASE)
_SUBJECT_ANY_RE = re.compile(r"(?:^|[_\-])S(\d+)(?:[_\-.]|$)", re.IGNORECASE)


def normalize_subject(s) -> str:
    """``5``, ``'5'``, ``'s5'``, ``'S05'`` -> ``'S05'`` (ActionSense writes two digits)."""
    text = str(s).strip()
    m = re.fullmatch(r"[sS]?(\d+)", text)
    return f"S{int(m.group(1)):02d}" if m else text


@dataclass(frozen=True)
class Activity:
    """One labelled activity instance (a Start row paired with the next Stop row of its label)."""

    label: str
    start_s: float
    stop_s: float
    rating: str
    notes: str = ""

    @property
    def duration_s(self) -> float:
        return self.stop_s - self.start_s


@dataclass
class Stream:
    """A stream after validation: finite rows only, time ascending."""

    device: str
    name: str
    data: np.ndarray  # (N, ...)
    time_s: np.ndarray  # (N,) float64

    @property
    def key(self) -> str:
        return f"{self.device}/{self.name}"


def _gist(e: Exception) -> str:
    """``'KeyError: Unable to open object (...)'``: the kind and first line of an h5py error, for a message."""
    text = str(e).strip("'\"").splitlines()[0][:160] if str(e) else "no detail"
    return f"{type(e).__name__}: {text}"


def _is_vlen_non_string(dtype) -> bool:
    return h5py.check_vlen_dtype(dtype) is not None and h5py.check_string_dtype(dtype) is None


def _decode(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8", errors="replace").strip()
    return str(x).strip()


class ActionSenseRecording:
    """One ActionSense recording (HDF5 + world video). Open lazily, read streams on demand.

    >>> rec = ActionSenseRecording("2022-06-13_..._streamLog_actionNet-wearables_S05.hdf5")
    >>> rec.subject, rec.available_modalities(), len(rec.activities())
    """

    def __init__(self, path: str | Path, video_path: str | Path | None = None):
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise RecordingError(self.path, "recording not found")
        try:
            self._h5 = h5py.File(self.path, "r")
        except _H5_ERRORS as e:
            raise RecordingError(self.path, f"cannot read HDF5 file (truncated or corrupt?): {e}") from None
        # Touch the root group: a truncated file may open but fail on the first read.
        try:
            self._devices = self._names(self._h5, None)
        except RecordingError:
            self._h5.close()
            raise
        self._video_path = Path(video_path).resolve() if video_path is not None else None
        self._cache: dict[str, Stream] = {}

    # ------------------------------------------------------------------ h5py access
    # Every read of the file's structure goes through these, so that a damaged file gives a RecordingError naming
    # the file and the stream instead of h5py's own KeyError / RuntimeError / OSError.
    def _damaged(self, e: Exception, what: str, stream: str | None) -> RecordingError:
        return RecordingError(self.path, f"cannot {what} (truncated or damaged HDF5 file? {_gist(e)})",
                              stream=stream)

    def _names(self, g, stream: str | None) -> list[str]:
        """Sorted link names of group ``g``."""
        try:
            names = list(g.keys())
        except _H5_ERRORS as e:
            raise self._damaged(e, "list the group's members", stream) from None
        odd = [n for n in names if not isinstance(n, str)]  # h5py gives bytes for a name that is not UTF-8
        if odd:
            raise RecordingError(self.path, f"member name {odd[0]!r} is not UTF-8 (damaged HDF5 file?)", stream=stream)
        return sorted(names)

    def _child(self, g, name: str, stream: str | None, kind=None):
        """``g[name]``, or None when ``g`` has no such member; when ``kind`` (h5py.Group or h5py.Dataset) is
        given, a member of another kind is an error (a damaged header can turn a dataset into a Datatype)."""
        try:
            if name not in g:
                return None
            obj = g[name]
        except _H5_ERRORS as e:
            raise self._damaged(e, f"open {name!r}", stream) from None
        if kind is not None and not isinstance(obj, kind):
            raise RecordingError(self.path, f"{name!r} is a {type(obj).__name__}, not a {kind.__name__} "
                                            f"(damaged HDF5 file?)", stream=stream)
        return obj

    def _attr(self, obj, key: str, stream: str | None):
        """Attribute ``key`` of ``obj`` as stored, or None when absent."""
        try:
            if key not in obj.attrs:
                return None
            if _is_vlen_non_string(obj.attrs.get_id(key).dtype):
                # ActionSense writes strings here; a damaged string type reads as variable-length bytes, and
                # h5py reading such an attribute crashed the process (a segfault) on a file with a flipped byte.
                raise RecordingError(self.path, f"attribute {key!r} is variable-length binary, not text "
                                                f"(damaged HDF5 file?)", stream=stream)
            return obj.attrs[key]
        except _H5_ERRORS as e:
            raise self._damaged(e, f"read attribute {key!r}", stream) from None

    def _read(self, g, dataset: str, stream: str, convert=None):
        """Dataset ``dataset`` of stream group ``g`` read whole (and passed through ``convert``)."""
        ds = self._child(g, dataset, stream, h5py.Dataset)
        if ds is None:
            raise RecordingError(self.path, f"stream has no {dataset!r} dataset", stream=stream)
        try:
            if _is_vlen_non_string(ds.dtype):  # as in _attr: no ActionSense stream is variable-length binary
                raise RecordingError(self.path, f"{dataset!r} is variable-length binary (damaged HDF5 file?)",
                                     stream=stream)
            value = ds[()]
            return value if convert is None else convert(value)
        except (*_H5_ERRORS, MemoryError) as e:  # MemoryError: a damaged dataspace can claim a huge shape
            raise RecordingError(self.path, f"cannot read {dataset!r} (truncated or damaged file?): {_gist(e)}",
                                 stream=stream) from None

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        try:
            self._h5.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"ActionSenseRecording({str(self.path)!r}, subject={self.subject!r})"

    @property
    def devices(self) -> list[str]:
        return list(self._devices)

    def streams(self, device: str | None = None) -> dict[str, list[str]] | list[str]:
        """Stream names of one device, or ``{device: [streams]}`` for all."""
        if device is not None:
            return self._names(self._group(device), device)
        out = {}
        for d in self._devices:
            g = self._child(self._h5, d, d)
            out[d] = [k for k in self._names(g, d) if isinstance(self._child(g, k, f"{d}/{k}"), h5py.Group)] \
                if isinstance(g, h5py.Group) else []
        return out

    def has_stream(self, device: str, name: str) -> bool:
        """Whether ``device/name`` is a stream group holding ``data``. A damaged file is an error, not False:
        a stream that cannot be read must not pass for one the recording lacks."""
        key = f"{device}/{name}"
        g = self._child(self._h5, device, key)
        s = self._child(g, name, key) if isinstance(g, h5py.Group) else None
        return isinstance(s, h5py.Group) and self._child(s, "data", key) is not None

    def _group(self, device: str, name: str | None = None):
        key = device if name is None else f"{device}/{name}"
        g = self._child(self._h5, device, key, h5py.Group)
        if g is None:
            raise RecordingError(self.path, f"device {device!r} is missing (devices present: {self._devices})",
                                 stream=key)
        if name is None:
            return g
        s = self._child(g, name, key, h5py.Group)
        if s is None:
            raise RecordingError(self.path, f"stream {name!r} is missing from device {device!r} "
                                            f"(streams present: {self._names(g, key)})", stream=key)
        return s

    @property
    def subject(self) -> str:
        """Subject id, e.g. ``'S05'``: from the ``_SXX.hdf5`` file name, else the file attributes, else the
        folder name, else the file stem (with a warning)."""
        m = _SUBJECT_RE.search(self.path.name)
        if m:
            return f"S{int(m.group(1)):02d}"
        for key in ("subject", "subject_id", "Subject"):
            raw = self._attr(self._h5, key, None)
            if raw is not None:
                return normalize_subject(_decode(raw))
        m = _SUBJECT_ANY_RE.search(self.path.stem) or _SUBJECT_ANY_RE.search(self.path.parent.name)
        if m:
            return f"S{int(m.group(1)):02d}"
        logger.warning("%s: no subject id in the file name (_SXX.hdf5) or attributes; using the file stem",
                       self.path)
        return self.path.stem

    @property
    def counterfactual(self) -> dict | None:
        """What a counterfactual recording changed, from its root attribute ``counterfactual`` (JSON:
        ``{"source": <observational HDF5 file name>, "edits": [{"family", "start_s", "end_s", "strength",
        "side"}, ...]}``): the same scene and initial state as ``source`` under perturbed actions. None
        for an observational recording (no such attribute: every real ActionSense file)."""
        raw = self._attr(self._h5, COUNTERFACTUAL_ATTR, None)
        if raw is None:
            return None
        try:
            info = json.loads(_decode(raw))
        except ValueError as e:
            raise RecordingError(self.path, f"root attribute {COUNTERFACTUAL_ATTR!r} is not valid JSON: {e}") from None
        if not isinstance(info, dict) or not isinstance(info.get("source"), str) \
                or not isinstance(info.get("edits"), list):
            raise RecordingError(self.path, f"root attribute {COUNTERFACTUAL_ATTR!r} must be a JSON object with "
                                            f"'source' (a file name) and 'edits' (a list), got {_decode(raw)[:200]!r}")
        return info

    # ------------------------------------------------------------------ streams
    def headings(self, device: str, name: str) -> list | None:
        """The stream's ``'Data headings'`` attribute parsed to a Python list (None if absent/unparsable).

        Read only when asked (``stream`` does not): ActionNet stores it as a variable-length string, whose bytes
        live in the file's global heap, and a damaged global heap can send the HDF5 library into an endless
        loop that no exception ends; preprocessing then never touches the global heap of an ActionSense file."""
        g = self._group(device, name)
        raw = self._attr(g, "Data headings", f"{device}/{name}")
        if raw is None:
            return None
        text = _decode(raw)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            logger.warning("%s [%s/%s]: cannot parse 'Data headings' attribute", self.path, device, name)
            return None
        return list(value) if isinstance(value, (list, tuple)) else None

    def time_s(self, device: str, name: str) -> np.ndarray:
        """Raw timestamps (flattened float64), as stored."""
        return self._read(self._group(device, name), "time_s", f"{device}/{name}",
                          lambda v: np.asarray(v, dtype=np.float64).reshape(-1))

    def data(self, device: str, name: str) -> np.ndarray:
        """Raw ``data`` array, as stored."""
        return self._read(self._group(device, name), "data", f"{device}/{name}")

    def stream(self, device: str, name: str, *, index_aligned: bool = False) -> Stream:
        """Validated stream: lengths agree, non-finite rows dropped (few) or error (many), time ascending
        (a few inversions sorted). Cached. ``index_aligned`` streams (row i belongs to video frame i) are
        never reordered or thinned: any non-finite or backward timestamp is an error."""
        key = f"{device}/{name}"
        if key in self._cache:
            return self._cache[key]
        data = self.data(device, name)
        t = self.time_s(device, name)
        if len(data) != len(t):
            raise RecordingError(self.path, f"'data' has {len(data)} rows but 'time_s' has {len(t)}", stream=key)
        if len(t) == 0:
            raise RecordingError(self.path, "stream is empty", stream=key)
        if data.dtype.kind in "fiu" and not index_aligned:
            data, t = self._drop_nonfinite(key, data, t)
        t_ok = np.isfinite(t)
        if not t_ok.all():
            raise RecordingError(self.path, f"{int((~t_ok).sum())} non-finite timestamps", stream=key)
        data, t = self._ensure_ascending(key, data, t, sortable=not index_aligned)
        s = Stream(device, name, data, t)
        self._cache[key] = s
        return s

    def _drop_nonfinite(self, key, data, t):
        if data.dtype.kind != "f" and np.isfinite(t).all():
            return data, t
        flat = data.reshape(len(data), -1)
        bad = ~np.isfinite(flat).all(axis=1) | ~np.isfinite(t)
        n_bad = int(bad.sum())
        if n_bad == 0:
            return data, t
        frac = n_bad / len(bad)
        if frac > MAX_BAD_FRACTION:
            raise RecordingError(self.path, f"{n_bad} of {len(bad)} samples ({100 * frac:.1f}%) are NaN/inf "
                                            f"(at most {100 * MAX_BAD_FRACTION:.0f}% can be dropped)", stream=key)
        logger.warning("%s [%s]: dropped %d NaN/inf samples of %d; frames near them use the nearest finite sample",
                       self.path, key, n_bad, len(bad))
        return data[~bad], t[~bad]

    def _ensure_ascending(self, key, data, t, sortable: bool):
        steps = np.diff(t)
        back = steps < 0
        n_back = int(back.sum())
        if n_back == 0:
            return data, t
        worst = float(-steps[back].min())
        if not sortable:
            i = int(np.argmax(back))
            raise RecordingError(self.path, f"timestamps go backwards at sample {i + 1} "
                                            f"({t[i]:.3f} -> {t[i + 1]:.3f} s; {n_back} times in all)", stream=key)
        if n_back > MAX_BACKSTEP_FRACTION * len(steps) or worst > MAX_BACKSTEP_S:
            i = int(np.argmax(back))
            raise RecordingError(self.path, f"timestamps go backwards {n_back} times (largest step back "
                                            f"{worst:.3f} s, first at sample {i + 1}); too many or too large to "
                                            f"sort safely", stream=key)
        logger.warning("%s [%s]: %d timestamps out of order (at most %.3f s back); sorted", self.path, key,
                       n_back, worst)
        order = np.argsort(t, kind="stable")
        return data[order], t[order]

    # ------------------------------------------------------------------ activities
    def activities(self, include_maybe: bool = False) -> list[Activity]:
        """Good activities (plus Maybe if asked), in time order."""
        key = f"{ACTIVITY_DEVICE}/{ACTIVITY_STREAM}"
        rows = self.data(ACTIVITY_DEVICE, ACTIVITY_STREAM)
        t = self.time_s(ACTIVITY_DEVICE, ACTIVITY_STREAM)
        if len(rows) == 0:
            raise RecordingError(self.path, "activity table is empty", stream=key)
        if len(rows) != len(t):
            raise RecordingError(self.path, f"'data' has {len(rows)} rows but 'time_s' has {len(t)}", stream=key)
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] < 3:
            raise RecordingError(self.path, f"activity rows must be (N, 4) [activity, Start|Stop, rating, notes], "
                                            f"got shape {rows.shape}", stream=key)
        order = np.argsort(t, kind="stable")
        open_: dict[str, tuple[float, str, str]] = {}
        out: list[Activity] = []
        unpaired = 0
        for i in order:
            label = _decode(rows[i, 0])
            kind = _decode(rows[i, 1])
            rating = _decode(rows[i, 2])
            notes = _decode(rows[i, 3]) if rows.shape[1] > 3 else ""
            if rating not in RATING_ORDER:
                logger.warning("%s [%s]: unknown rating %r for %r treated as Bad", self.path, key, rating, label)
                rating = "Bad"
            if kind == "Start":
                if label in open_:
                    unpaired += 1
                open_[label] = (float(t[i]), rating, notes)
            elif kind == "Stop":
                if label not in open_:
                    unpaired += 1
                    continue
                start, r0, n0 = open_.pop(label)
                worst = max((r0, rating), key=lambda r: RATING_ORDER[r])
                worst = worst or "Good"
                out.append(Activity(label, start, float(t[i]), worst, n0 or notes))
            else:
                unpaired += 1
        unpaired += len(open_)
        if unpaired:
            logger.warning("%s [%s]: ignored %d unpaired Start/Stop rows", self.path, key, unpaired)
        keep = {"Good"} | ({"Maybe"} if include_maybe else set())
        out = [a for a in out if a.rating in keep and a.stop_s > a.start_s]
        out.sort(key=lambda a: a.start_s)
        return out

    # ------------------------------------------------------------------ video
    @property
    def video_path(self) -> Path:
        """The world video beside the HDF5 (name contains ``eye-tracking-video-world``, ends ``.mp4``)."""
        if self._video_path is None:
            self._video_path = self._find_video()
        return self._video_path

    def _find_video(self) -> Path:
        folder = self.path.parent
        cands = sorted(p for p in folder.iterdir()
                       if p.is_file() and VIDEO_DEVICE in p.name and p.name.lower().endswith(".mp4"))
        if not cands:
            raise RecordingError(self.path, f"no world video (*{VIDEO_DEVICE}*.mp4) beside the HDF5 in {folder}",
                                 stream=f"{VIDEO_DEVICE}/{VIDEO_STREAM}")
        if len(cands) == 1:
            return cands[0]
        subj = self.subject
        tagged = [p for p in cands if re.search(rf"(?:^|[_\-]){re.escape(subj)}(?:[_\-.]|$)", p.name, re.I)]
        if len(tagged) == 1:
            return tagged[0]
        pool = tagged or cands
        # Several candidates of this subject: the one whose frame count matches the frame timestamps.
        from mmsim_core.video import video_info

        n = len(self.time_s(VIDEO_DEVICE, VIDEO_STREAM))
        exact = []
        for p in pool:
            try:
                if video_info(p)["frames"] == n:
                    exact.append(p)
            except RecordingError:
                pass
        if len(exact) == 1:
            return exact[0]
        raise RecordingError(self.path, f"several world videos could belong to this recording: "
                                        f"{[p.name for p in pool]}; pass video_path=",
                             stream=f"{VIDEO_DEVICE}/{VIDEO_STREAM}")

    def frame_times(self) -> np.ndarray:
        """``(N,)`` capture time of each world-video frame (system clock, seconds)."""
        return self.stream(VIDEO_DEVICE, VIDEO_STREAM, index_aligned=True).time_s

    def check_video(self) -> dict:
        """Open the world video and compare its frame count with the frame timestamps (from the container
        header; preprocessing re-checks while decoding). Returns ``video_info``."""
        from mmsim_core.video import video_info

        info = video_info(self.video_path)
        n = len(self.frame_times())
        if info["frames"] <= 0:
            raise RecordingError(self.video_path, "video reports no frames")
        if info["frames"] < n:
            raise RecordingError(self.video_path, f"video has {info['frames']} frames but the recording has {n} "
                                                  f"frame timestamps", stream=f"{VIDEO_DEVICE}/{VIDEO_STREAM}")
        return info

    # ------------------------------------------------------------------ modalities
    def sample_shape(self, device: str, name: str) -> tuple[int, ...]:
        """Per-sample shape of a stream's ``data`` (without reading it)."""
        key = f"{device}/{name}"
        ds = self._child(self._group(device, name), "data", key, h5py.Dataset)
        if ds is None:
            raise RecordingError(self.path, "stream has no 'data' dataset", stream=key)
        try:
            return tuple(ds.shape[1:])
        except _H5_ERRORS as e:
            raise self._damaged(e, "read the shape of 'data'", key) from None

    def modality_status(self) -> dict[str, str | None]:
        """``{modality: None if available else the reason it is not}``, for every registered modality.

        A stream whose per-sample shape no modality reading it accepts is an error in the recording."""
        accepted: dict[str, set] = {}
        for spec in schema.MODALITIES.values():
            for src in spec.sources:
                for path in src.paths():
                    accepted.setdefault(path, set()).update(src.sample_shapes)
        out: dict[str, str | None] = {}
        for m, spec in schema.MODALITIES.items():
            reason = None
            for src in spec.sources:
                for path in src.paths():
                    device, name = path.split("/", 1)
                    if not self.has_stream(device, name):
                        reason = f"{path} missing"
                        break
                    shape = self.sample_shape(device, name)
                    if shape not in accepted[path]:
                        raise RecordingError(self.path, f"per-sample shape {shape} is not one of "
                                                        f"{sorted(accepted[path])}", stream=path)
                    if shape not in src.sample_shapes:
                        why = f"; {src.unusable_reason}" if src.unusable_reason else ""
                        reason = f"{path} has per-sample shape {shape}, {m} needs one of {list(src.sample_shapes)}{why}"
                        break
                if reason:
                    break
            out[m] = reason
        return out

    def available_modalities(self) -> tuple[str, ...]:
        """Which of the registered action modalities this recording can give (schema order)."""
        status = self.modality_status()
        return tuple(m for m in schema.MODALITIES if status[m] is None)

    def validate(self) -> None:
        """Check what preprocessing needs: activities, frame timestamps, the video, modality streams."""
        self.activities()
        self.frame_times()
        self.check_video()
        for m in self.available_modalities():
            for path in schema.MODALITIES[m].source:
                self.stream(*path.split("/", 1))


# ---------------------------------------------------------------------------------------------------
# Alignment to video frame times
# ---------------------------------------------------------------------------------------------------
def nearest_indices(sample_t: np.ndarray, query_t: np.ndarray, max_gap_s: float = MAX_GAP_S):
    """Index of the nearest sample for each query time, and whether it lies within ``max_gap_s``.
    ``sample_t`` ascending. Returns ``(idx (Q,), valid (Q,) bool)``."""
    j = np.searchsorted(sample_t, query_t)
    lo = np.clip(j - 1, 0, len(sample_t) - 1)
    hi = np.clip(j, 0, len(sample_t) - 1)
    take_hi = np.abs(sample_t[hi] - query_t) < np.abs(query_t - sample_t[lo])
    idx = np.where(take_hi, hi, lo)
    valid = np.abs(sample_t[idx] - query_t) <= max_gap_s
    return idx, valid


def window_mean_abs(stream: Stream, query_t: np.ndarray, window_s: float = 0.1, max_gap_s: float = MAX_GAP_S):
    """EMG envelope: mean |x| per channel over samples within ``±window_s/2`` of each query time.
    Windows holding no sample fall back to the nearest sample's |x| (valid only within ``max_gap_s``).
    Returns ``(env (Q, C) float32, valid (Q,) bool)``."""
    x = np.abs(stream.data.astype(np.float64)).reshape(len(stream.data), -1)  # (N, C)
    cs = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])  # (N+1, C)
    a = np.searchsorted(stream.time_s, query_t - window_s / 2, side="left")
    b = np.searchsorted(stream.time_s, query_t + window_s / 2, side="right")
    n = (b - a)[:, None]
    env = (cs[b] - cs[a]) / np.maximum(n, 1)
    idx, valid = nearest_indices(stream.time_s, query_t, max_gap_s)
    empty = n[:, 0] == 0
    env[empty] = x[idx[empty]]
    return env.astype(np.float32), valid


def align_stream(stream: Stream, spec: schema.ModalitySpec, query_t: np.ndarray, max_gap_s: float = MAX_GAP_S):
    """One source stream sampled at the query times the way ``spec.align`` says.
    Returns ``(values (Q, *sample shape) float32, valid (Q,) bool)``."""
    if spec.align == "mean_abs":
        env, valid = window_mean_abs(stream, query_t, spec.window_s, max_gap_s)
        return env.reshape((len(query_t),) + stream.data.shape[1:]), valid
    idx, valid = nearest_indices(stream.time_s, query_t, max_gap_s)
    return stream.data[idx].astype(np.float32), valid


def align_modalities(rec: ActionSenseRecording, frame_t: np.ndarray, modalities=None) -> tuple[dict, dict]:
    """Raw per-frame action values at the given video frame times.

    Each modality's source streams (``schema.MODALITIES[name].sources``) are aligned to the frames
    (``align_stream``) and combined by its geometric normalisation (``ModalitySpec.from_streams``).
    Returns ``(values, valid)``: ``values[name]`` float32 ``(Q, *schema shape)`` in raw units (hand pose
    carpus-relative cm, body pose minus CoM in cm, EMG envelope, tactile ADC); ``valid[name]`` bool
    ``(Q,)`` false where a source stream has no sample within ``MAX_GAP_S``.
    """
    modalities = rec.available_modalities() if modalities is None else tuple(modalities)
    values: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    for name in modalities:
        spec = schema.MODALITIES[name]
        ok = np.ones(len(frame_t), dtype=bool)
        aligned = []
        for src in spec.sources:
            per_path = []
            for path in src.paths():
                x, x_ok = align_stream(rec.stream(*path.split("/", 1)), spec, frame_t)
                per_path.append(x)
                ok &= x_ok
            aligned.append(np.stack(per_path, axis=1) if src.per_side else per_path[0])  # (Q, [2,] *sample)
        values[name] = spec.from_streams(aligned)  # (Q, *shape)
        valid[name] = ok
    return values, valid
