"""``mmsim preprocess``: ActionSense-layout recordings -> clip shards + manifest + normalisation stats.

Per recording (a process pool runs recordings in parallel):

1. read the Good activities (plus Maybe if asked) and the world-video frame times;
2. cut windows of ``context + future`` frames inside every activity, for each frame step ``k``
   (every k-th video frame; paper §7.4 resamples three ways: slow / normal / fast) with ``stride``
   (in sampled frames) between window starts;
3. align every action stream to the frames those windows use (nearest sample in time; EMG envelope
   = mean |emg| over 0.1 s centred on the frame) and apply the geometric normalisations (hand pose
   carpus-relative, body pose minus CoM), see :func:`~mmsim_core.data.actionsense.align_modalities`;
4. decode the world video once, centre-crop + resize the frames used (``mmsim_core.video``).

Then the subjects are split (``test_subjects``, default the last subject: the paper holds out one),
min-max statistics are fitted on the **train** split only and saved as ``normalization.json``, text
descriptions are made (:mod:`mmsim_core.data.text`) and clips are written to HDF5 shards in the
format of :mod:`mmsim_core.data.shards` (``out/manifest.json``, ``out/normalization.json``,
``out/train/shard_0000.h5``, ..., ``out/test/shard_0000.h5``, ...).

A recording that cannot be used is skipped with a logged reason (listed under
``manifest["recordings"]["skipped"]``) as long as others remain.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmsim_core import schema
from mmsim_core.data import text as text_mod
from mmsim_core.data.actionsense import ActionSenseRecording, align_modalities, normalize_subject
from mmsim_core.data.shards import (
    COMPRESSIONS,
    MANIFEST_NAME,
    SPLITS,
    STATS_NAME,
    ClipShardWriter,
    write_manifest,
)
from mmsim_core.errors import DatasetError, MMSimError, RecordingError, UsageError

logger = logging.getLogger(__name__)



ALL_SUBJECTS = "all"
"""``test_subjects=("all",)``: every subject in the test split (new recordings for a trained model)."""


BUNDLE_DIR = "recordings"
"""Folder of a dataset holding the recordings' bundled sidecar files (``PreprocessConfig.bundle_sidecars``)."""


@dataclass
class PreprocessConfig:
    """How recordings become clips. Defaults follow the paper (64x64, 4 context + 8 future frames)."""

    size: int = schema.FRAME_SIZE
    context: int = schema.CONTEXT_FRAMES
    future: int = schema.FUTURE_FRAMES
    stride: int = 4
    frame_steps: tuple[int, ...] = (1, 2, 3)
    test_subjects: tuple[str, ...] | None = None
    """Subjects held out for the test split. None: the last subject; ``()`` or ``("none",)``: nobody (everything
    in train); ``("all",)``: everybody (everything in test; needs ``stats``, there is no train split to fit)."""
    include_maybe: bool = False
    shard_size: int = 512
    workers: int | None = None
    compression: str | None = "lzf"
    """HDF5 filter for frames and actions, one chunk per clip. ``"lzf"`` (default) costs little to read
    and shrinks the mostly-saturated tactile maps and flat image regions; None stores raw."""
    stats: str | None = None
    """A ``normalization.json`` (e.g. a trained pipeline's) to normalise with instead of fitting min/max
    on the train split. Needed to evaluate a model on new recordings: its inputs must be scaled as in
    its training data, and a folder with only test recordings has no train split to fit on."""

    bundle_sidecars: tuple[str, ...] = ()
    """Suffixes of files kept beside a recording (``<hdf5 stem><suffix>``, e.g. the synthetic world's
    ``.oracle.npz``) to copy into the dataset, under ``recordings/<subject>/``; clips of such recordings then
    name their ``source`` relative to the dataset folder (``ClipDataset`` resolves it), so the dataset can
    move, and be shipped, without the raw recordings."""

    def __post_init__(self):
        self.bundle_sidecars = tuple(str(x) for x in (self.bundle_sidecars or ()))
        bad = [x for x in self.bundle_sidecars if not x.startswith(".") or "/" in x or "\\" in x]
        if bad:
            raise ValueError(f"bundle_sidecars: each must be a file-name suffix starting with '.', got {bad[0]!r}")
        for name in ("size", "context", "future", "stride", "shard_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {self.size}")
        steps = tuple(self.frame_steps) if self.frame_steps is not None else ()
        if not steps or any(not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1 for k in steps):
            raise ValueError(f"frame_steps must be a non-empty list of positive integers, got {self.frame_steps!r}")
        if len(set(steps)) != len(steps):
            raise ValueError(f"frame_steps must not repeat, got {self.frame_steps!r}")
        self.frame_steps = tuple(int(k) for k in steps)
        if self.test_subjects is not None:
            if isinstance(self.test_subjects, str):
                self.test_subjects = tuple(t for t in self.test_subjects.replace(",", " ").split() if t)
            words = tuple(str(s).strip().lower() for s in self.test_subjects)
            if words == ("none",):
                self.test_subjects = ()
            elif words == (ALL_SUBJECTS,):
                self.test_subjects = (ALL_SUBJECTS,)
            elif "none" in words or ALL_SUBJECTS in words:
                raise ValueError(f"test_subjects: 'none' and 'all' stand alone, got {list(self.test_subjects)}")
            else:
                self.test_subjects = tuple(normalize_subject(s) for s in self.test_subjects)
        if self.workers is not None and (not isinstance(self.workers, (int, np.integer)) or self.workers < 1):
            raise ValueError(f"workers must be a positive integer or None, got {self.workers!r}")
        if self.stats is not None:
            self.stats = str(self.stats)
            if not Path(self.stats).is_file():
                raise ValueError(f"stats must be an existing normalization.json, got {self.stats!r}")
            try:
                schema.NormalizationStats.load(self.stats)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ValueError(f"stats: {self.stats} is not a usable normalization.json ({e})") from None
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {self.compression!r}")

    @property
    def clip_frames(self) -> int:
        return self.context + self.future


def find_recordings(raw_dir: str | Path) -> list[Path]:
    """Every ``*.hdf5`` under ``raw_dir`` (recursively), sorted."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DatasetError(f"raw recordings folder not found: {raw_dir}")
    return sorted(p.resolve() for p in raw_dir.rglob("*.hdf5") if p.is_file())


# ---------------------------------------------------------------------------------------------------
# Stage 1: one recording -> intermediate file of the frames / raw actions its clips use
# ---------------------------------------------------------------------------------------------------
def clip_windows(frame_t: np.ndarray, start_s: float, stop_s: float, length: int, stride: int, step: int):
    """Windows of ``length`` video-frame indices (every ``step``-th frame) inside ``[start_s, stop_s]``,
    window starts ``stride`` sampled frames apart. ``(W, length)`` int64."""
    a = int(np.searchsorted(frame_t, start_s, side="left"))
    b = int(np.searchsorted(frame_t, stop_s, side="right"))
    seq = np.arange(a, b, step)
    if len(seq) < length:
        return np.zeros((0, length), dtype=np.int64)
    starts = np.arange(0, len(seq) - length + 1, stride)
    return seq[starts[:, None] + np.arange(length)[None, :]]


def decode_frames(video_path: Path, wanted: np.ndarray, size: int) -> np.ndarray:
    """Decode the world video once; centre-crop + resize only the ``wanted`` (sorted, unique) frame
    indices. Stops after the last wanted frame. ``(len(wanted), size, size, 3)`` uint8."""
    import cv2

    from mmsim_core.video import center_crop_resize

    out = np.empty((len(wanted), size, size, 3), dtype=np.uint8)
    cap = cv2.VideoCapture(str(video_path))
    if not cap.isOpened():
        raise RecordingError(video_path, "video cannot be opened (missing, unreadable or not a video)")
    try:
        j = 0
        i = 0
        last = int(wanted[-1]) if len(wanted) else -1
        while i <= last:
            if not cap.grab():
                raise RecordingError(video_path, f"video ended after {i} decodable frames but frame {last} is "
                                                 f"needed (fewer frames than frame timestamps)")
            if i == wanted[j]:
                ok, frame = cap.retrieve()
                if not ok:
                    raise RecordingError(video_path, f"frame {i} cannot be decoded")
                out[j] = center_crop_resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), size)
                j += 1
            i += 1
    finally:
        cap.release()
    return out


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())


def _stage1(path: str, work_dir: str, cfg_dict: dict, index: int, in_pool: bool) -> dict:
    """Worker: returns a summary (no big arrays); writes ``work_dir/<index>.npz``."""
    if in_pool:
        import cv2

        cv2.setNumThreads(1)
    handler = _ListHandler()
    lib_logger = logging.getLogger("mmsim_core")
    lib_logger.addHandler(handler)
    try:
        return _stage1_inner(Path(path), Path(work_dir), PreprocessConfig(**cfg_dict), index, handler)
    except MMSimError as e:
        return {"ok": False, "path": path, "reason": str(e), "warnings": handler.records}
    except Exception as e:  # a damaged input must not take down the other recordings
        logger.debug("stage 1 failed on %s", path, exc_info=True)
        return {"ok": False, "path": path, "reason": f"{type(e).__name__}: {e}", "warnings": handler.records}
    finally:
        lib_logger.removeHandler(handler)


def _stage1_inner(path: Path, work_dir: Path, cfg: PreprocessConfig, index: int, handler) -> dict:
    t0 = time.perf_counter()
    with ActionSenseRecording(path) as rec:
        subject = rec.subject
        counterfactual = rec.counterfactual
        activities = rec.activities(include_maybe=cfg.include_maybe)
        if not activities:
            raise RecordingError(path, "no activities rated Good" + (" or Maybe" if cfg.include_maybe else ""),
                                 stream="experiment-activities/activities")
        frame_t = rec.frame_times()
        rec.check_video()
        video = rec.video_path
        status = rec.modality_status()
        modalities = tuple(m for m in schema.MODALITIES if status[m] is None)

        # Windows per activity and frame step.
        clips = []
        for ai, act in enumerate(activities):
            for k in cfg.frame_steps:
                for w in clip_windows(frame_t, act.start_s, act.stop_s, cfg.clip_frames, cfg.stride, k):
                    clips.append((ai, k, w))
        if not clips:
            raise RecordingError(path, f"no activity is long enough for one clip of {cfg.clip_frames} frames")
        used = np.unique(np.concatenate([w for _, _, w in clips]))  # sorted video frame indices
        values, valid = align_modalities(rec, frame_t[used], modalities)

    frames = decode_frames(video, used, cfg.size)
    pos = np.searchsorted(used, np.stack([w for _, _, w in clips]))  # (C, T) rows into `used`

    # Per clip: which modalities are present (valid at every frame), grip summary for the text.
    present = {m: valid[m][pos].all(axis=1) for m in modalities}  # {m: (C,)}
    grip = schema.modality_with_role("grip", modalities)  # the modality the sentences' grip words come from
    force = text_mod.force_summary(values[grip], grip) if grip else None  # (U, 2)
    minmax = {}
    for m in modalities:
        if not present[m].any() or schema.MODALITIES[m].normalization != "minmax":
            continue
        rows = np.unique(pos[present[m]])
        v = values[m][rows]
        minmax[m] = (v.min(axis=0), v.max(axis=0))

    npz = work_dir / f"rec_{index:04d}.npz"
    np.savez(npz, frames=frames, used=used, pos=pos, **{f"v_{m}": values[m] for m in modalities})
    clip_info = [{
        "activity_index": ai,
        "activity": activities[ai].label,
        "rating": activities[ai].rating,
        "frame_step": int(k),
        "start_time_s": float(frame_t[w[0]]),
        "end_time_s": float(frame_t[w[-1]]),
        "video_frame_indices": [int(x) for x in w],
        "present": {m: bool(present[m][c]) for m in modalities},
        "force": force[pos[c]] if force is not None and present[grip][c] else None,
    } for c, (ai, k, w) in enumerate(clips)]
    return {
        "ok": True,
        "path": str(path),
        "video": str(video),
        "subject": subject,
        "counterfactual": counterfactual,
        "index": index,
        "npz": str(npz),
        "modalities": modalities,
        "missing_modalities": {m: r for m, r in status.items() if r is not None},
        "num_activities": len(activities),
        "num_frames": int(len(frame_t)),
        "clips": clip_info,
        "minmax": minmax,
        "seconds": time.perf_counter() - t0,
        "warnings": handler.records,
    }


# ---------------------------------------------------------------------------------------------------
# Stage 2/3: split, statistics, text, shards
# ---------------------------------------------------------------------------------------------------
class SubjectSplitError(DatasetError, UsageError):
    """The subjects asked for the test split do not fit the recordings found (the CLI names --test-subjects)."""


def _choose_test_subjects(subjects: list[str], cfg: PreprocessConfig) -> tuple[str, ...]:
    if cfg.test_subjects is None:
        if len(subjects) < 2:
            raise SubjectSplitError(f"only one subject ({subjects[0]}) among the usable recordings: the default hold-out "
                             f"of the last subject would leave no training data. Pass --test-subjects none "
                             f"(test_subjects=()) to put everything in train, --test-subjects all with --stats "
                             f"to put everything in test, or add recordings")
        return (subjects[-1],)
    if cfg.test_subjects == (ALL_SUBJECTS,):
        if cfg.stats is None:
            raise SubjectSplitError("--test-subjects all (test_subjects=('all',)) leaves no train split to fit the "
                             "normalisation on: pass --stats CKPT/normalization.json (stats=...) as well")
        return tuple(subjects)
    unknown = [s for s in cfg.test_subjects if s not in subjects]
    if unknown:
        raise SubjectSplitError(f"test_subjects {unknown} not among the usable recordings' subjects {subjects} "
                                f"(--test-subjects)")
    return tuple(cfg.test_subjects)


def _stage3(r: dict, out_dir: str, split: str, cfg_dict: dict, stats_dict: dict, modalities: tuple[str, ...],
            refs: dict, first_shard: int) -> dict:
    """Worker: normalise one recording's clips, describe them, write them to shards."""
    cfg = PreprocessConfig(**cfg_dict)
    stats = schema.NormalizationStats.from_dict(stats_dict)
    w = ClipShardWriter(out_dir, split, modalities, cfg.shard_size, first_shard, cfg.compression)
    with np.load(r["npz"]) as z:
        frames, pos = z["frames"], z["pos"]
        # Normalise each aligned frame once; clips then gather rows (windows overlap).
        norm = {m: schema.normalize(m, z[f"v_{m}"], stats) for m in r["modalities"] if m in modalities}
    grip = schema.modality_with_role("grip")
    for ci, c in enumerate(r["clips"]):
        rows = pos[ci]
        present = {m: bool(c["present"].get(m, False)) and m in norm for m in modalities}
        actions = {m: norm[m][rows] for m in modalities if present[m]}
        text = text_mod.describe(c["activity"], c["frame_step"], c["force"] if present.get(grip) else None,
                                 refs.get(c["activity"]))
        meta = {
            "subject": r["subject"],
            "activity": c["activity"],
            "rating": c["rating"],
            "activity_index": c["activity_index"],
            "source": r.get("source", r["path"]),
            "video": r["video"],
            "start_time_s": c["start_time_s"],
            "end_time_s": c["end_time_s"],
            "frame_step": c["frame_step"],
            "video_frame_indices": c["video_frame_indices"],
            "modalities": [m for m in modalities if present[m]],
            "counterfactual": r["counterfactual"],  # None: observational
        }
        w.add(frames[rows], actions, text, meta)
    w.flush()
    return {"shards": w.shards, "counts": w.counts}


def preprocess(raw_dir: str | Path, out_dir: str | Path, cfg: PreprocessConfig | None = None) -> dict:
    """Preprocess every ``*.hdf5`` recording under ``raw_dir`` into clip shards under ``out_dir``.
    Returns the manifest (also written to ``out_dir/manifest.json``)."""
    cfg = cfg or PreprocessConfig()
    t_start = time.perf_counter()
    raw_dir, out_dir = Path(raw_dir).resolve(), Path(out_dir).resolve()
    paths = find_recordings(raw_dir)
    if not paths:
        raise DatasetError(f"no *.hdf5 recordings under {raw_dir}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way, no permission
        raise DatasetError(f"cannot create the output folder {out_dir}: {e.strerror or e}") from None
    for split in SPLITS:  # stale shards from an earlier run would be listed by nobody but still confuse
        if (out_dir / split).is_dir():
            shutil.rmtree(out_dir / split)
    work_dir = out_dir / ".work"
    work_dir.mkdir(exist_ok=True)
    workers = cfg.workers if cfg.workers is not None else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(paths)))
    logger.info("preprocessing %d recordings with %d worker(s)", len(paths), workers)
    pool = None
    try:
        if workers > 1:
            import multiprocessing as mp

            # spawn, not fork: the caller may hold torch/OpenMP threads or open HDF5 handles.
            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        results = _run_stage1(pool, paths, work_dir, cfg)
        return _finish(pool, results, raw_dir, out_dir, cfg, t_start)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(work_dir, ignore_errors=True)


def _map(pool, fn, jobs: list[tuple]) -> list:
    if pool is None:
        return [fn(*job) for job in jobs]
    futs = [pool.submit(fn, *job) for job in jobs]
    return [f.result() for f in futs]


def _run_stage1(pool, paths: list[Path], work_dir: Path, cfg: PreprocessConfig) -> list[dict]:
    cfg_dict = asdict(cfg)
    results = _map(pool, _stage1, [(str(p), str(work_dir), cfg_dict, i, pool is not None) for i, p in enumerate(paths)])
    for r in results:
        for w in r.get("warnings", []) if pool is not None else []:
            logger.warning("%s", w)  # workers' warnings, replayed here (in-process ones were logged already)
        if r["ok"]:
            logger.info("%s: subject %s, %d clips, modalities %s (%.1f s)", r["path"], r["subject"],
                        len(r["clips"]), list(r["modalities"]), r["seconds"])
        else:
            logger.warning("skipping %s: %s", r["path"], r["reason"])
    return results


def _bundle_sidecars(records: list[dict], out_dir: Path, suffixes: tuple[str, ...]) -> dict[str, list[str]]:
    """Copy each recording's sidecar files with these suffixes to ``out_dir/recordings/<subject>/`` and point
    its clips' ``source`` there (relative); recordings without any keep their absolute path."""
    bundled: dict[str, list[str]] = {}
    if not suffixes:
        return bundled
    shutil.rmtree(out_dir / BUNDLE_DIR, ignore_errors=True)  # an earlier run's copies
    for r in records:
        src = Path(r["path"])
        found = [src.with_name(src.stem + x) for x in suffixes if src.with_name(src.stem + x).is_file()]
        if not found:
            continue
        rel = Path(BUNDLE_DIR) / r["subject"] / ("counterfactual" if r["counterfactual"] else "") / src.name
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        for f in found:
            shutil.copyfile(f, out_dir / rel.with_name(f.name))
        r["source"] = rel.as_posix()
        bundled[r["path"]] = [rel.with_name(f.name).as_posix() for f in found]
    logger.info("bundled the sidecars of %d of %d recordings under %s", len(bundled), len(records),
                out_dir / BUNDLE_DIR)
    return bundled


def _finish(pool, results: list[dict], raw_dir: Path, out_dir: Path, cfg: PreprocessConfig, t_start: float) -> dict:
    ok = [r for r in results if r["ok"]]
    skipped = [{"path": r["path"], "reason": r["reason"]} for r in results if not r["ok"]]
    if not ok:
        reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in skipped)
        raise DatasetError(f"no usable recordings under {raw_dir} ({reasons})")
    subjects = sorted({r["subject"] for r in ok})
    test_subjects = _choose_test_subjects(subjects, cfg)
    split_of = {r["path"]: ("test" if r["subject"] in test_subjects else "train") for r in ok}

    # Min-max statistics from the train split only (elementwise min/max per recording, then pooled over
    # the axes the schema pools: NormalizationStats.fit does that reduction).
    # (or the given statistics file, e.g. the normalisation of the model these clips will be fed to).
    if cfg.stats is not None:
        stats = schema.NormalizationStats.load(cfg.stats)
    else:
        train = [r for r in ok if split_of[r["path"]] == "train"]
        # Counterfactual recordings (edited actions) leave the statistics alone when observational ones
        # exist: an observational-only model normalises exactly as if they were not there.
        train = [r for r in train if r["counterfactual"] is None] or train
        samples: dict[str, list] = {}
        for r in train:
            for m, (lo, hi) in r["minmax"].items():
                samples.setdefault(m, []).extend([lo, hi])
        stats = schema.NormalizationStats.fit({m: np.stack(v) for m, v in samples.items()})
    stats.save(out_dir / STATS_NAME)

    # Modalities a split can carry: minmax ones need train statistics.
    def usable(m: str) -> bool:
        return schema.MODALITIES[m].normalization == "fixed_clip" or m in stats.minimum

    dropped_no_stats = sorted({m for r in ok for m in r["modalities"] if not usable(m)})
    if dropped_no_stats:
        logger.warning("modalities %s have no normalisation statistics (they occur only in test recordings; "
                       "pass stats=... / --stats with a model's normalization.json to keep them): left out",
                       dropped_no_stats)
    modalities = tuple(m for m in schema.MODALITIES
                       if usable(m) and any(c["present"].get(m) for r in ok for c in r["clips"]))

    # Text: grip reference per activity from the train split (test-only activities use their own clips).
    forces: dict[str, dict[str, list]] = {"train": {}, "all": {}}
    for r in ok:
        for c in r["clips"]:
            if c["force"] is not None:
                forces["all"].setdefault(c["activity"], []).append(c["force"])
                if split_of[r["path"]] == "train":
                    forces["train"].setdefault(c["activity"], []).append(c["force"])
    refs = {a: text_mod.activity_force_reference(forces["train"].get(a) or f) for a, f in forces["all"].items()}

    bundled = _bundle_sidecars(ok, out_dir, cfg.bundle_sidecars)

    # Stage 3: every recording writes its own shards (numbered in advance so workers need not talk).
    jobs, next_shard = [], {s: 0 for s in SPLITS}
    for r in ok:
        split = split_of[r["path"]]
        jobs.append((r, str(out_dir), split, asdict(cfg), stats.to_dict(), modalities, refs, next_shard[split]))
        next_shard[split] += -(-len(r["clips"]) // cfg.shard_size)
    for s in SPLITS:
        (out_dir / s).mkdir(parents=True, exist_ok=True)
    written = _map(pool, _stage3, jobs)
    shards = {s: [] for s in SPLITS}
    counts = {s: {m: 0 for m in modalities} for s in SPLITS}
    used_records = []
    for r, wr in zip(ok, written):
        split = split_of[r["path"]]
        shards[split].extend(wr["shards"])
        for m, n in wr["counts"].items():
            counts[split][m] += n
        used_records.append({
            "path": r["path"], "video": r["video"], "subject": r["subject"], "split": split,
            "counterfactual": r["counterfactual"] is not None,
            "modalities": list(r["modalities"]), "missing_modalities": r["missing_modalities"],
            "num_activities": r["num_activities"], "num_frames": r["num_frames"], "num_clips": len(r["clips"]),
            **({"bundled": bundled[r["path"]]} if r["path"] in bundled else {}),
        })

    manifest = write_manifest(out_dir, {
        "config": {**asdict(cfg), "frame_steps": list(cfg.frame_steps), "bundle_sidecars": list(cfg.bundle_sidecars),
                   "test_subjects": list(cfg.test_subjects) if cfg.test_subjects is not None else None},
        "clip": {"context": cfg.context, "future": cfg.future, "size": cfg.size},
        "modalities": list(modalities),
        "splits": {s: {"shards": shards[s],
                       "num_clips": sum(sh["num_clips"] for sh in shards[s]),
                       "subjects": sorted({r["subject"] for r in ok if split_of[r["path"]] == s}),
                       "modality_clips": counts[s]} for s in SPLITS},
        "recordings": {"used": used_records, "skipped": skipped},
        "stats": STATS_NAME,
        "raw_dir": str(raw_dir),
        "seconds": round(time.perf_counter() - t_start, 2),
    })
    logger.info("wrote %s: %s", out_dir / MANIFEST_NAME,
                ", ".join(f"{s} {manifest['splits'][s]['num_clips']} clips" for s in SPLITS))
    return manifest
