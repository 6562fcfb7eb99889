"""Experiment suites. ``mmsim bench paper-tables``: the paper's Tables 1, 2, 3a, 3b, 8-12 on the synthetic
benchmark, plus counterfactual control fidelity.

    mmsim bench paper-tables --budget-steps 2000                     # everything, default data and config
    mmsim bench paper-tables --only table1,table3a --eval-clips 64
    mmsim bench paper-tables --data data/processed --work runs/paper_tables --out results/
    mmsim bench paper-tables --list                                   # the plan: variants and rows

What it does, in order, for the tables asked for:

1. **Data.** ``--data DIR`` (a ``mmsim preprocess`` folder), or synthetic recordings
   (``--synth-subjects 6 --synth-seconds 120 --synth-seed 0``) generated and preprocessed under
   ``WORK/data`` once (the last subject is the held-out test subject, like the paper's subject 5).
   Table 11's h=1 models use the same clips cut to their last context frame; Table 12 re-preprocesses
   the same recordings with another subject held out.
2. **Training.** Every variant (``training/experiments.py``) is trained with ``train(cfg)`` from ONE base
   config (``--config``, default ``demo-cpu``): same backbone, steps (``--budget-steps``), batch size, lr,
   schedule, EMA and seed for all. Runs live in ``WORK/runs/<variant>``.
3. **Evaluation** of every row with ``evaluate(EvalConfig)`` on the held-out subject (``--eval-clips``
   clips spread over the test split, one fixed noise draw per clip), test-time drop/keep for Tables 3a,
   9, 10 on the one "Ours" model. Cached in ``WORK/evals``.
4. **Control fidelity** (``training/control.py``) of the "Ours" model on edited trajectories.
5. **Reports**: ``OUT/paper_tables.json`` (keys ``table1`` ... ``table12``, rows keyed by the paper's row
   names, our MSE/PSNR/SSIM/LPIPS/FVD — LPIPS/FVD only with their real weights, else ``null`` with the
   reason — and the paper's numbers beside; ``control_fidelity``; the issue's goals; the exact command,
   budget and machine), ``OUT/paper_tables.md`` and the temporal-drift figure
   ``OUT/paper_tables_drift.html`` (+ ``.png`` when kaleido is installed).

Resumable at variant granularity: a finished variant (``WORK/runs/<v>/bench_done.json`` for this budget)
and its evaluations are reused; an interrupted training resumes from its last checkpoint
(``train(cfg, resume=True)``); raising ``--budget-steps`` later continues the finished runs to the new
budget. A run folder trained with a different config is never silently reused (clear error instead).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from mmsim_core.errors import MMSimError
from mmsim.training import experiments as ex
from mmsim.training.config import TrainConfig, named_configs, resolve_config
from mmsim.training.control import FEASIBLE_RATIO, GOAL_MARGIN_DB, GOAL_MAX_DROP_DB, MODALITY_INFORMATION_FORMAT

logger = logging.getLogger("mmsim.bench")

DROP_ROW = {"Body-pose only": "No body pose", "Hand-pose only": "No hand pose", "Muscle-EMG only": "No muscle EMG",
            "Hand-force only": "No hand force"}
"""Table 1's single-modality row -> Table 3a's row of Ours without that modality."""

RESULTS_FORMAT = "mmsim-paper-tables-v1"
METRICS = ("mse", "psnr", "ssim", "lpips", "fvd")
PAPER_METRICS = ("mse", "psnr", "lpips", "fvd")
LABELS = {"mse": "MSE ↓", "psnr": "PSNR ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓", "fvd": "FVD ↓"}
# Keys that do not change what a run learns: they may differ between sessions of one resumable run.
BOOKKEEPING = ("max_steps", "checkpoint_every", "log_every", "keep_checkpoints", "out", "num_workers", "log_with")
ACTIONS_UNUSED_DB = 0.3
"""Ours within this much of itself with every action dropped: the conditioning is not used yet."""
DEFAULT_BUDGET = 2000


class RowSkipped(MMSimError):
    """A row that cannot run on this data (e.g. its held-out subject does not exist)."""


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------
@dataclass
class SuiteConfig:
    work: str = "runs/paper_tables"
    out: str = "results"
    tables: tuple[str, ...] = ex.TABLE_KEYS
    variants: tuple[str, ...] | None = None
    """Only train/evaluate these variants; other rows come from finished runs in ``work``, else pending."""
    budget_steps: int = DEFAULT_BUDGET
    config: str = "demo-cpu"
    preset: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    overrides: tuple[str, ...] = ()
    data: str | None = None
    synth_subjects: int = 6
    synth_seconds: float = 120.0
    synth_seed: int = 0
    eval_clips: int | None = 128
    eval_steps: int | None = None
    eval_batch_size: int = 8
    control_clips: int = 16
    control: bool = True
    seed: int = 0

    def __post_init__(self):
        self.tables = tuple(self.tables)
        if self.budget_steps < 1:
            raise MMSimError(f"--budget-steps must be >= 1, got {self.budget_steps}")
        if self.eval_clips is not None and self.eval_clips < 1:
            raise MMSimError(f"--eval-clips must be >= 1, got {self.eval_clips}")
        if self.synth_subjects < 2:
            raise MMSimError(f"--synth-subjects must be >= 2 (one is held out), got {self.synth_subjects}")
        if self.variants is not None:
            unknown = [v for v in self.variants if v not in ex.VARIANTS]
            if unknown:
                raise MMSimError(f"unknown variant(s) {unknown}; variants are {list(ex.VARIANTS)}")

    def base_train_config(self) -> TrainConfig:
        """The ONE config every variant starts from: budget, batch, lr, schedule, EMA, seed."""
        try:
            cfg = resolve_config(self.config, list(self.overrides), preset=self.preset, max_steps=self.budget_steps,
                                 batch_size=self.batch_size, lr=self.lr, seed=self.seed)
        except ValueError as e:
            raise MMSimError(str(e)) from None
        cfg.checkpoint_every = min(cfg.checkpoint_every, self.budget_steps)
        cfg.log_every = min(cfg.log_every, self.budget_steps)
        cfg.keep_checkpoints = 1  # 30 runs: keep disk use in check; resuming needs only the newest
        return cfg


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "hostname": platform.node()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def _jsonable(x):
    return json.loads(json.dumps(x, default=list))


def _fingerprint(cfg: TrainConfig | dict) -> dict:
    d = _jsonable(asdict(cfg) if isinstance(cfg, TrainConfig) else cfg)
    return {k: v for k, v in d.items() if k not in BOOKKEEPING}


def _diff(a: dict, b: dict) -> list[str]:
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _test_subjects(data: str) -> list[str] | None:
    try:
        return json.loads((Path(data) / "manifest.json").read_text())["splits"]["test"].get("subjects")
    except (OSError, ValueError, KeyError):
        return None


def logged_train_seconds(run: Path) -> float | None:
    """Wall seconds of training in ``run/log.jsonl``, summed over every session that logged, killed ones
    included (up to their last log line). Lines written before ``window_s`` existed are estimated as
    their steps over ``steps_per_s``; a step lower than the line before marks a resumed session.
    ``None`` when the run has no log."""
    path = run / "log.jsonl"
    if not path.is_file():
        return None
    config = run / "config.json"
    every = json.loads(config.read_text()).get("checkpoint_every", 500) if config.is_file() else 500
    total, prev = 0.0, 0
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        step = int(rec.get("step", 0))
        if "window_s" in rec:
            total += float(rec["window_s"])
        elif rec.get("steps_per_s"):
            # A resumed session's first window starts at the checkpoint it resumed from.
            steps = step - prev if step > prev else step - (step - 1) // every * every
            total += steps / float(rec["steps_per_s"])
        prev = step
    return total


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False))
    tmp.replace(path)


def _cached(path: Path, key: dict) -> dict | None:
    """The cached result at ``path`` if it was computed for ``key`` (its "bench_key"), else None."""
    if not path.is_file():
        return None
    cached = json.loads(path.read_text())
    return cached if cached.get("bench_key") == key else None


def _cache(path: Path, key: dict, result: dict) -> dict:
    result["bench_key"] = key
    _write_json(path, result)
    return result


# ----------------------------------------------------------------------------------------------
# The suite
# ----------------------------------------------------------------------------------------------
class PaperTables:
    def __init__(self, cfg: SuiteConfig, command: str | None = None):
        self.cfg = cfg
        self.work = Path(cfg.work)
        self.out = Path(cfg.out)
        self.command = command or "mmsim bench paper-tables"
        self.base = cfg.base_train_config()
        self.rows = ex.rows(cfg.tables)
        self.variants = [v for v in ex.variants_for(cfg.tables) if cfg.variants is None or v.key in cfg.variants]
        self._data: dict[str, Path] = {}
        self.train_log: dict[str, dict] = {}
        self.evals: dict[tuple[str, str], dict] = {}
        self.errors: dict[tuple[str, str], str] = {}
        self.control_report: dict | None = None
        self.references: dict[str, dict] = {}
        self.control_error: str | None = None
        self.modality_info: dict | None = None
        self.margin_ceiling: dict | None = None
        self.alias: dict[str, str] = {}
        """variant -> the variant whose run it shares (same data and training config)."""
        self._fingerprints: dict[str, dict] = {}

    # ------------------------------------------------------------------ data
    def main_data(self) -> Path:
        if "main" in self._data:
            return self._data["main"]
        if self.cfg.data:
            path = Path(self.cfg.data)
            if not (path / "manifest.json").is_file():
                raise MMSimError(f"--data {path}: no manifest.json (a `mmsim preprocess` output folder is expected)")
        else:
            path = self._synthetic_data()
        self._data["main"] = path
        return path

    def _synthetic_data(self) -> Path:
        from mmsim_core.data.preprocess import PreprocessConfig, preprocess
        from mmsim_core.synth import generate_dataset

        raw, proc = self.work / "data" / "raw", self.work / "data" / "processed"
        want = {"subjects": self.cfg.synth_subjects, "seconds": self.cfg.synth_seconds, "seed": self.cfg.synth_seed}
        marker = raw / "synth.json"
        if marker.is_file() and json.loads(marker.read_text()) != want:
            raise MMSimError(f"{raw} holds synthetic data made with {json.loads(marker.read_text())}, not {want}; "
                             f"use another --work or the same --synth-* flags")
        if not marker.is_file():
            logger.info("generating synthetic recordings %s -> %s", want, raw)
            generate_dataset(raw, subjects=want["subjects"], seconds=want["seconds"], seed=want["seed"])
            _write_json(marker, want)
        if not (proc / "manifest.json").is_file():
            logger.info("preprocessing %s -> %s", raw, proc)
            preprocess(raw, proc, PreprocessConfig())
        return proc

    def data_for(self, kind: str) -> Path:
        if kind in self._data:
            return self._data[kind]
        main = self.main_data()
        manifest = json.loads((main / "manifest.json").read_text())
        if kind == ex.MAIN:
            return main
        if kind == ex.CONTEXT1:
            path = self.work / "data" / "context1"
            m = path / "manifest.json"
            if not m.is_file() or json.loads(m.read_text()).get("derived_from", {}).get("path") != str(main):
                logger.info("cutting %s to one context frame -> %s", main, path)
                ex.slice_context(main, path, 1)
        elif kind.startswith(ex.HOLDOUT):
            subject = kind[len(ex.HOLDOUT):]
            subjects = sorted(set(manifest["splits"]["train"].get("subjects", []))
                              | set(manifest["splits"]["test"].get("subjects", [])))  # fmt: skip
            if subject not in subjects:
                raise RowSkipped(f"subject {subject} is not in the data (subjects {subjects})")
            if manifest["splits"]["test"].get("subjects") == [subject]:
                path = main
            else:
                path = self._holdout(main, manifest, subject)
        else:
            raise ValueError(f"unknown data kind {kind!r}")
        self._data[kind] = path
        return path

    def _holdout(self, main: Path, manifest: dict, subject: str) -> Path:
        from mmsim_core.data.preprocess import PreprocessConfig, preprocess

        path = self.work / "data" / f"holdout-{subject}"
        if (path / "manifest.json").is_file():
            return path
        keys = ("size", "context", "future", "stride", "frame_steps", "include_maybe", "shard_size", "compression")
        pc = {k: manifest["config"][k] for k in keys if k in manifest["config"]}
        pc["frame_steps"] = tuple(pc.get("frame_steps", (1, 2, 3)))
        logger.info("preprocessing %s with %s held out -> %s", manifest["raw_dir"], subject, path)
        preprocess(manifest["raw_dir"], path, PreprocessConfig(**pc, test_subjects=(subject,)))
        return path

    # ------------------------------------------------------------------ training
    def run_dir(self, key: str) -> Path:
        return self.work / "runs" / key

    def train_variant(self, v: ex.Variant, allow_train: bool = True) -> dict | None:
        """Train (or reuse, or resume) one variant; returns its bench_done.json record. With
        ``allow_train=False`` only a finished run is returned (None otherwise)."""
        from mmsim.training.train import latest_checkpoint, train

        data = self.data_for(v.data)
        want = _fingerprint(ex.train_config(v, self.base, data, "."))
        for key, fp in self._fingerprints.items():  # the same model under another row name: train it once
            if fp == want:
                logger.info("variant %s: same data and config as %s, reusing that run", v.key, key)
                self.alias[v.key] = self.alias.get(key, key)
                return self.train_log.get(key)
        self._fingerprints[v.key] = want
        run = self.run_dir(v.key)
        cfg = ex.train_config(v, self.base, data, run)
        done_file = run / "bench_done.json"
        done = json.loads(done_file.read_text()) if done_file.is_file() else None
        if (run / "config.json").is_file():
            saved = _fingerprint(json.loads((run / "config.json").read_text()))
            if saved != want:
                raise MMSimError(f"{run} was trained with another config ({'; '.join(_diff(saved, want))}); "
                                 f"delete it or use another --work")
        if done and done["max_steps"] == cfg.max_steps and (run / "final" / "model_index.json").is_file():
            logger.info("variant %s: reusing the finished run (%d steps)", v.key, cfg.max_steps)
            logged = logged_train_seconds(run)  # runs finished before killed sessions were counted
            return done if logged is None else {**done, "train_seconds": logged}
        if not allow_train:
            return None
        if done and done["max_steps"] > cfg.max_steps:
            raise MMSimError(f"{run} is already trained for {done['max_steps']} steps, more than --budget-steps "
                             f"{cfg.max_steps}; use the same budget or another --work")
        resume = latest_checkpoint(run) is not None
        logger.info("variant %s: %s training to %d steps (%s)", v.key, "resuming" if resume else "start",
                    cfg.max_steps, v.description)
        t0 = time.perf_counter()
        train(cfg, resume=resume)
        seconds = time.perf_counter() - t0
        logged = logged_train_seconds(run)  # every session, killed ones included
        record = {"variant": v.key, "max_steps": cfg.max_steps,
                  "train_seconds": logged if logged is not None else seconds + (done or {}).get("train_seconds", 0.0),
                  "sessions": (done or {}).get("sessions", 0) + 1, "resumed": resume, "data": str(data),
                  "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        _write_json(done_file, record)
        return record

    # ------------------------------------------------------------------ evaluation
    def evaluate_row(self, row: ex.Row, trained: dict, allow_eval: bool = True) -> dict | None:
        """Evaluate one row (cached in WORK/evals); with ``allow_eval=False`` only the cache is read."""
        from mmsim.training.evaluate import EvalConfig, evaluate

        v = ex.VARIANTS[row.variant]
        run_key = self.alias.get(v.key, v.key)
        data = self.data_for(v.data)
        key = {"variant": run_key, "trained_steps": trained["max_steps"], "protocol": row.protocol, "data": str(data),
               "split": "test", "limit": self.cfg.eval_clips, "num_inference_steps": self.cfg.eval_steps,
               "seed": self.cfg.seed}  # fmt: skip
        path = self.work / "evals" / f"{run_key}__{row.protocol}.json"
        if (cached := _cached(path, key)) is not None or not allow_eval:
            return cached
        ecfg = EvalConfig(checkpoint=str(self.run_dir(run_key) / "final"), data=str(data), split="test",
                          drop=row.drop, keep=row.keep, limit=self.cfg.eval_clips, seed=self.cfg.seed,
                          num_inference_steps=self.cfg.eval_steps, batch_size=self.cfg.eval_batch_size,
                          label=row.name)
        logger.info("evaluating %s / %s (%s)", row.table, row.name, row.protocol)
        results = evaluate(ecfg, progress=False)
        results.pop("per_clip", None)  # per-clip values stay out of the suite cache (size)
        return _cache(path, key, results)

    def run_control(self, trained: dict, allow_eval: bool = True) -> None:
        from mmsim.training.control import control_fidelity

        data = self.data_for(ex.MAIN)
        key = {"trained_steps": trained["max_steps"], "clips": self.cfg.control_clips, "data": str(data),
               "num_inference_steps": self.cfg.eval_steps, "seed": self.cfg.seed}
        path = self.work / "evals" / "control__ours.json"
        self.control_report = _cached(path, key)
        if self.control_report is not None or not allow_eval:
            return
        logger.info("control fidelity of 'ours' on %d clips", self.cfg.control_clips)
        report = control_fidelity(str(self.run_dir("ours") / "final"), str(data), clips=self.cfg.control_clips,
                                  seed=self.cfg.seed, num_inference_steps=self.cfg.eval_steps)
        self.control_report = _cache(path, key, report)

    def run_modality_information(self, allow_eval: bool = True) -> None:
        """The oracle's answer to "is each modality's information in the video?" on the same test clips
        (no model; see ``training.control.modality_information``). Synthetic data only."""
        from mmsim.training.control import modality_information

        data = self.data_for(ex.MAIN)
        key = {"data": str(data), "clips": self.cfg.eval_clips, "format": MODALITY_INFORMATION_FORMAT}
        path = self.work / "evals" / "modality_information.json"
        self.modality_info = _cached(path, key)
        if self.modality_info is not None or not allow_eval:
            return
        try:
            report = modality_information(str(data), "test", clips=self.cfg.eval_clips)
        except MMSimError as e:  # e.g. real recordings: no oracle
            self.modality_info = {"status": f"unavailable: {e}"}
            return
        self.modality_info = _cache(path, key, report)

    def run_margin_ceiling(self, allow_eval: bool = True) -> None:
        """The oracle's estimate of the most Ours could lead Body-pose only by: both checkpoints with the pixels hand pose,
        EMG and force decide filled by the truth (``training.control.margin_ceiling``). Synthetic data only."""
        from mmsim.training.control import margin_ceiling

        runs = {"Body-pose only": "only-body-pose", "Ours multisensory": "ours"}
        if any(k not in self.train_log for k in runs.values()):
            return
        data = self.data_for(ex.MAIN)
        key = {"data": str(data), "clips": self.cfg.eval_clips, "seed": self.cfg.seed,
               "num_inference_steps": self.cfg.eval_steps,
               "trained_steps": {k: self.train_log[k]["max_steps"] for k in runs.values()}}
        path = self.work / "evals" / "margin_ceiling.json"
        self.margin_ceiling = _cached(path, key)
        if self.margin_ceiling is not None or not allow_eval:
            return
        ckpts = {name: str(self.run_dir(k) / "final") for name, k in runs.items()}
        try:
            report = margin_ceiling(list(ckpts.values()), str(data), "test", clips=self.cfg.eval_clips,
                                    seed=self.cfg.seed, num_inference_steps=self.cfg.eval_steps)
        except MMSimError as e:  # e.g. real recordings: no oracle
            self.margin_ceiling = {"status": f"unavailable: {e}"}
            return
        report["rows"] = {name: report["checkpoints"][c] for name, c in ckpts.items()}
        self.margin_ceiling = _cache(path, key, report)

    def evaluate_references(self, trained: dict | None, allow_eval: bool = True) -> None:
        """Reference rows beside the tables: copying the last context frame, and "Ours" with every action
        dropped. A variant below them has not learned to use its conditioning at this budget."""
        from mmsim.training.evaluate import EvalConfig, evaluate

        data = self.data_for(ex.MAIN)
        todo = {"Copy last context frame": ("copy-last", None)}
        if trained is not None:
            todo["Ours, all actions dropped"] = ("no-actions", str(self.run_dir("ours") / "final"))
        for name, (baseline, ckpt) in todo.items():
            key = {"baseline": baseline, "trained_steps": (trained or {}).get("max_steps") if ckpt else None,
                   "data": str(data), "split": "test", "limit": self.cfg.eval_clips,
                   "num_inference_steps": self.cfg.eval_steps, "seed": self.cfg.seed}
            path = self.work / "evals" / f"reference__{baseline}.json"
            if (cached := _cached(path, key)) is not None:
                self.references[name] = cached
                continue
            if not allow_eval:
                continue
            logger.info("evaluating reference %s", name)
            results = evaluate(EvalConfig(checkpoint=ckpt, baseline=baseline, data=str(data), split="test",
                                          limit=self.cfg.eval_clips, seed=self.cfg.seed, label=name,
                                          num_inference_steps=self.cfg.eval_steps,
                                          batch_size=self.cfg.eval_batch_size), progress=False)
            results.pop("per_clip", None)
            self.references[name] = _cache(path, key, results)

    # ------------------------------------------------------------------ the whole suite
    def run(self) -> dict:
        """Train and evaluate the selected variants; finished runs of the others (earlier sessions, other
        machines sharing WORK) are reported from their caches, never retrained here."""
        t0 = time.perf_counter()
        self.main_data()
        selected = {v.key for v in self.variants}
        self.run_modality_information(allow_eval=bool(selected))
        for v in ex.variants_for(self.cfg.tables):
            active = v.key in selected
            try:
                trained = self.train_variant(v, allow_train=active)
            except RowSkipped as e:
                for r in self.rows:
                    if r.variant == v.key:
                        self.errors[(r.table, r.name)] = f"skipped: {e}"
                continue
            if trained is None:
                continue
            self.train_log[v.key] = trained
            for r in self.rows:
                if r.variant == v.key:
                    res = self.evaluate_row(r, trained, allow_eval=active)
                    if res is not None:
                        self.evals[(r.table, r.name)] = res
            if v.key == "ours" and self.cfg.control:
                try:
                    self.run_control(trained, allow_eval=active)
                except MMSimError as e:  # e.g. real recordings: no oracle
                    self.control_error = str(e)
                    logger.warning("control fidelity unavailable: %s", e)
            if v.key == "ours":
                self.evaluate_references(trained, allow_eval=active)
            if active:
                self.write(time.perf_counter() - t0)  # partial results after every variant
        if not self.references:
            self.evaluate_references(None, allow_eval=bool(selected))
        self.run_margin_ceiling(allow_eval=bool(selected))
        return self.write(time.perf_counter() - t0)

    # ------------------------------------------------------------------ reports
    def _row_entry(self, row: ex.Row) -> dict:
        v = ex.VARIANTS[row.variant]
        entry = {"variant": v.key, "variant_description": v.description,
                 "test_protocol": {"drop": list(row.drop), "keep": None if row.keep is None else list(row.keep)},
                 "paper": row.paper}  # fmt: skip
        if row.note:
            entry["note"] = row.note
        r = self.evals.get((row.table, row.name))
        if r is None:
            entry["status"] = self.errors.get((row.table, row.name), "pending (not trained/evaluated yet)")
            return entry
        metrics = {m: r["metrics"].get(m) for m in METRICS}
        entry.update(status="done", metrics=metrics, metrics_std=r.get("metrics_std", {}),
                     unavailable=r.get("unavailable", {}), per_frame=r.get("per_frame", {}), num_clips=r["num_clips"],
                     trained_steps=self.train_log.get(v.key, {}).get("max_steps"),
                     run=self.alias.get(v.key, v.key),
                     data=r["settings"]["data"], test_subjects=_test_subjects(r["settings"]["data"]),
                     seconds_per_clip=r.get("timing", {}).get("seconds_per_clip"))
        return entry

    def goals(self, tables: dict) -> dict:
        def metric(t, name, key="psnr"):
            e = tables.get(t, {}).get(name, {})
            return e.get("metrics", {}).get(key) if e.get("status") == "done" else None

        out = {"margin_db_required": GOAL_MARGIN_DB, "max_drop_db_allowed": GOAL_MAX_DROP_DB}
        ours = metric("table1", "Ours multisensory")
        text = {n: metric("table1", n) for n in ("UniSim verb", "UniSim phrase", "UniSim sentence")}
        single = {n: metric("table1", n) for n in ("Body-pose only", "Hand-pose only", "Muscle-EMG only", "Hand-force only")}
        drops = {n: metric("table3a", n) for n in ("No hand pose", "No hand force", "No body pose", "No muscle EMG")}
        if ours is not None and all(x is not None for x in text.values()):
            best = max(text, key=text.get)
            out["vs_best_text"] = {"best": best, "margin_db": ours - text[best], "met": ours - text[best] >= GOAL_MARGIN_DB}
        if ours is not None and all(x is not None for x in single.values()):
            best = max(single, key=single.get)
            out["vs_best_single_modality"] = {"best": best, "margin_db": ours - single[best],
                                              "met": ours - single[best] >= GOAL_MARGIN_DB}
        dropped = self.references.get("Ours, all actions dropped")
        copy = self.references.get("Copy last context frame")
        if ours is not None and dropped is not None:
            # How much the actions help at all: when ~0, every margin above is noise, not a ranking.
            out["actions_used"] = {"ours_minus_all_actions_dropped_db": ours - dropped["metrics"]["psnr"],
                                   "ours_minus_copy_last_db": ours - copy["metrics"]["psnr"] if copy else None}
        all_used = metric("table3a", "All sensory used")
        if all_used is not None and all(x is not None for x in drops.values()):
            worst = min(drops, key=drops.get)
            out["test_time_drop"] = {"worst": worst, "drop_db": all_used - drops[worst],
                                     "per_modality_db": {n: all_used - p for n, p in drops.items()},
                                     "met": all_used - drops[worst] <= GOAL_MAX_DROP_DB}
        # Two goals at once, read off the trained models (see training.control.FEASIBLE_RATIO): what not
        # hearing a modality costs Ours over what a row the margin is measured against costs, both as MSE above
        # Ours' own. Against Body-pose only: the single-modality margin and the drop; against the best text row:
        # the text margin and the drop (Ours without that modality must still beat the text row by 0.7 dB).
        def joint(unknown_row: str, other_row: str, other_key: str) -> dict | None:
            e0, unknown, other_mse = (metric(t, n, "mse") for t, n in (("table3a", "All sensory used"),
                                                                  ("table3a", unknown_row), ("table1", other_row)))
            if None in (e0, unknown, other_mse) or other_mse <= e0:
                return None
            ratio = max(unknown - e0, 0.0) / (other_mse - e0)
            return {"unknown_mse_above_ours": unknown - e0, other_key: other_mse - e0, "ratio": ratio,
                    "ratio_required": FEASIBLE_RATIO, "possible": ratio <= FEASIBLE_RATIO}

        if "vs_best_single_modality" in out and "test_time_drop" in out:
            best = out["vs_best_single_modality"]["best"]
            if (x := joint(DROP_ROW[best], best, "alone_mse_above_ours")) is not None:
                out["joint"] = {"modality": best, **x}
        if "vs_best_text" in out and "test_time_drop" in out:
            text, worst = out["vs_best_text"]["best"], out["test_time_drop"]["worst"]
            if (x := joint(worst, text, "text_mse_above_ours")) is not None:
                out["joint_text"] = {"text_row": text, "drop_row": worst, **x}
        return out

    def write(self, seconds: float | None = None) -> dict:
        tables = {t: {r.name: self._row_entry(r) for r in ex.TABLES[t]} for t in self.cfg.tables}
        base = _jsonable(asdict(self.base))
        for k in ("data", "out"):
            base.pop(k, None)
        result = {
            "format": RESULTS_FORMAT,
            **tables,
            "control_fidelity": self.control_report if self.control_report is not None
            else {"status": self.control_error or "pending"},
            "modality_information": self.modality_info or {"status": "pending"},
            "margin_ceiling": self.margin_ceiling or {"status": "pending (needs Body-pose only and Ours trained)"},
            "references": {name: {"metrics": {m: r["metrics"].get(m) for m in METRICS},
                                  "per_frame": r.get("per_frame", {}), "num_clips": r["num_clips"]}
                           for name, r in self.references.items()},
            "goals": self.goals(tables),
            "meta": {
                "command": self.command,
                "budget": {"steps": self.base.max_steps, "batch_size": self.base.batch_size, "lr": self.base.lr,
                           "preset": self.base.preset, "config": self.cfg.config, "same_for_every_variant": True},
                "base_train_config": base,
                "suite": _jsonable(asdict(self.cfg)),
                "data": str(self._data.get("main", self.cfg.data or "")),
                "machine": machine_info(),
                "train_seconds": {k: v.get("train_seconds") for k, v in self.train_log.items()},
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "session_seconds": seconds,
                "titles": {t: ex.TABLE_TITLES[t] for t in self.cfg.tables},
            },
        }
        self.out.mkdir(parents=True, exist_ok=True)
        figure = self.drift_figure(tables)
        result["meta"]["drift_figure"] = figure
        _write_json(self.out / "paper_tables.json", result)
        (self.out / "paper_tables.md").write_text(markdown(result))
        return result

    def drift_figure(self, tables: dict) -> dict:
        """Per-frame curves (paper Fig. 4) of the Table 1 rows (or whatever rows are done)."""
        from mmsim.training.evaluate import curves_figure

        src = "table1" if "table1" in tables else next(iter(tables), None)
        curves = [{"label": name, "per_frame": e["per_frame"]} for name, e in tables.get(src, {}).items()
                  if e.get("status") == "done"]  # fmt: skip
        curves += [{"label": name, "per_frame": r["per_frame"]} for name, r in self.references.items()
                   if r.get("per_frame")]
        if not curves:
            return {"status": "no finished rows yet"}
        fig = curves_figure(curves)
        fig.update_layout(title=f"Temporal drift: metrics per predicted frame ({ex.TABLE_TITLES[src]})")
        html = self.out / "paper_tables_drift.html"
        # plotly.js from its CDN: the committed results stay ~100 kB instead of 4.8 MB.
        fig.write_html(str(html), include_plotlyjs="cdn", full_html=True)
        out = {"html": html.name, "rows_of": src}
        try:
            import kaleido  # noqa: F401

            fig.write_image(str(html.with_suffix(".png")))
            out["png"] = html.with_suffix(".png").name
        except Exception as e:  # noqa: BLE001 - optional: kaleido missing or no browser for it
            out["png"] = f"unavailable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'kaleido'})"
        return out


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------
def _fmt(m: str, x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}" if m == "psnr" else f"{x:.1f}" if m == "fvd" else f"{x:.4f}" if m != "lpips" else f"{x:.3f}"


def _paper_fmt(m: str, x) -> str:
    if x is None:
        return "–"
    return f"{x:.1f}" if m in ("psnr", "fvd") else f"{x:.3f}"


def _modality_information_md(mi: dict) -> list[str]:
    if "held" not in mi:
        return [f"Is each modality in the video? {mi.get('status', 'pending')}", ""]
    n = mi["num_clips"]
    lines = ["## Is each modality's information in the video? (the oracle, no model)", "",
             f"The world's oracle re-renders the future of the same {n} test clips with one modality's future "
             "held at its last history value, and compares it with the future under the recorded actions "
             "(`python benchmarks/bench_modality_information.py`). The error is what not knowing that modality "
             "costs; a model's margin from a modality is bounded by it. \"Only it known\" guesses every other "
             "modality instead (held, or for poses extrapolated at their last velocity where that costs less): "
             "what a single-modality model could at best see.", "",
             "| Modality | not known: MSE | PSNR of mean MSE | share of all-held MSE | clips visibly changed "
             "| only it known: MSE | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    total = mi["every_modality_held"]["mse"]
    feas = mi.get("feasibility", {}).get("modalities", {})
    for m, x in mi["held"].items():
        share = f"{100 * x['mse'] / total:.0f}%" if total > 0 else "n/a"
        alone = f"{mi['alone'][m]['mse']:.5f}" if m in mi.get("alone", {}) else "–"
        ratio = f"{feas[m]['ratio']:.2f}" if m in feas else "–"
        lines.append(f"| {ex.MODALITY_LABELS.get(m, m)} | {x['mse']:.5f} | {x['psnr_pooled']:.2f} | {share} | "
                     f"{x['visible_clips']}/{n} | {alone} | {ratio} |")
    for name, x in (("every modality", mi["every_modality_held"]), ("(copy last frame)", mi["copy_last_frame"])):
        share = f"{100 * x['mse'] / total:.0f}%" if total > 0 else "n/a"
        lines.append(f"| {name} | {x['mse']:.5f} | {x['psnr_pooled']:.2f} | {share} | {x['visible_clips']}/{n} | | |")
    if "body_parts" in mi:
        bp = mi["body_parts"]
        lines += ["", f"Body pose's own parts held: only the arms (where the hands are) {bp['arms']['mse']:.5f}; only the "
                  f"camera and trunk (where the head camera looks) {bp['camera and trunk']['mse']:.5f}."]
    if feas:
        f = mi["feasibility"]

        def verdict(feasible, consequence: str) -> str:
            bad = [ex.MODALITY_LABELS.get(m, m) for m, x in feas.items() if not feasible(x)]
            return "Every modality passes." if not bad else f"{', '.join(bad)} fails: {consequence}"

        lines += ["", f"Ratio: not known / only it known. Ours ≥ {f['margin_db']} dB above every single-modality row "
                  f"while no dropped modality costs more than {f['drop_db']} dB needs every ratio ≤ "
                  f"{f['ratio_required']:.2f}, if a model's MSE is its own rendering error plus the oracle's loss "
                  "(`training.control.FEASIBLE_RATIO`). "
                  + verdict(lambda x: x["feasible"], "on this data the two goals exclude each other for any "
                            "model that errs additively.")]
        if all("vs_text" in x for x in feas.values()):
            per = ", ".join(f"{ex.MODALITY_LABELS.get(m, m)} {x['vs_text']['ratio']:.2f}" for m, x in feas.items())
            lines += ["", f"The text margin and the drop goal pair the same way, with a text row's loss taken as that of "
                      f"knowing no action (every modality held): not known / nothing known = {per} (each ≤ "
                      f"{f['ratio_required']:.2f} needed). "
                      + verdict(lambda x: x["vs_text"]["feasible"], "without it, the other modalities cannot lift "
                                f"Ours {f['margin_db'] - f['drop_db']:.1f} dB above a text row.")]
    return lines + [""]


def markdown(result: dict) -> str:
    meta = result["meta"]
    mach = meta["machine"]
    b = meta["budget"]
    lines = ["# Paper tables on the synthetic benchmark", "",
             f"Command: `{meta['command']}`  ",
             f"Budget (every variant): {b['steps']} steps, batch {b['batch_size']}, lr {b['lr']}, preset "
             f"`{b['preset']}` (config `{b['config']}`)  ",
             f"Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['torch']}"
             + (f", GPU {mach['gpu']}" if mach.get("gpu") else "") + "  ",
             f"Data: `{meta['data']}`; held-out subject test split; date {meta['date']}", "",
             "Ours vs the paper: the paper's numbers are from ActionSense with a 252 M-parameter I2VGen backbone "
             "trained 15 days on 8 H100; ours are from the synthetic world with the CPU preset. Compare rankings and "
             "margins, not absolute values.", ""]  # fmt: skip
    g = result["goals"]
    lines += ["## Goals (issue 4)", ""]
    if "vs_best_text" in g:
        x = g["vs_best_text"]
        lines.append(f"- Ours multisensory vs best text row ({x['best']}): {x['margin_db']:+.2f} dB PSNR "
                     f"(goal ≥ {g['margin_db_required']} dB): **{'met' if x['met'] else 'not met'}**")
    if "vs_best_single_modality" in g:
        x = g["vs_best_single_modality"]
        lines.append(f"- Ours multisensory vs best single modality ({x['best']}): {x['margin_db']:+.2f} dB PSNR "
                     f"(goal ≥ {g['margin_db_required']} dB): **{'met' if x['met'] else 'not met'}**")
    mc = result.get("margin_ceiling") or {}
    if "rows" in mc:
        body, ours = mc["rows"]["Body-pose only"]["all"], mc["rows"]["Ours multisensory"]["all"]
        lines.append(
            f"- How much of that margin the world holds (`benchmarks/bench_margin_ceiling.py`, the oracle): hand "
            f"pose, EMG and force decide {100 * mc['mask_fraction']['all']:.1f}% of the future pixels, which hold "
            f"{100 * body['share_of_mse_in_mask']:.0f}% of Body-pose only's squared error; filled with the truth "
            f"they would lift it by {body['ceiling_gain']:+.2f} dB. Ours' error there: "
            f"{ours['model_mse'] * ours['share_of_mse_in_mask']:.5f} vs Body-pose only's "
            f"{body['model_mse'] * body['share_of_mse_in_mask']:.5f} (MSE pooled over all pixels)")
    if "test_time_drop" in g:
        x = g["test_time_drop"]
        per = ", ".join(f"{k}: {v:+.2f}" for k, v in x["per_modality_db"].items())
        lines.append(f"- Largest test-time drop ({x['worst']}): {x['drop_db']:.2f} dB (goal ≤ "
                     f"{g['max_drop_db_allowed']} dB): **{'met' if x['met'] else 'not met'}** ({per})")
    if "joint" in g:
        x = g["joint"]
        lines.append(
            f"- Both of the last two goals at once need Ours' {DROP_ROW[x['modality']]} row to lose at most "
            f"{x['ratio_required']:.2f}x what {x['modality']} loses (MSE above Ours'; `training.control.FEASIBLE_RATIO`)."
            f" The trained models: {x['unknown_mse_above_ours']:.5f} / {x['alone_mse_above_ours']:.5f} = "
            f"{x['ratio']:.2f}x ({'possible' if x['possible'] else 'not possible with these models'})")
    if "joint_text" in g:
        x = g["joint_text"]
        lines.append(
            f"- The text margin and the drop goal at once need Ours' {x['drop_row']} row to lose at most "
            f"{x['ratio_required']:.2f}x what {x['text_row']} loses, i.e. to beat it by "
            f"{g['margin_db_required'] - g['max_drop_db_allowed']:.1f} dB. The trained models: "
            f"{x['unknown_mse_above_ours']:.5f} / {x['text_mse_above_ours']:.5f} = {x['ratio']:.2f}x "
            f"({'possible' if x['possible'] else 'not possible with these models'})")
    if "actions_used" in g:
        x = g["actions_used"]
        used = x["ours_minus_all_actions_dropped_db"]
        line = f"- Actions used at all: Ours multisensory minus itself with every action dropped = {used:+.2f} dB"
        if x.get("ours_minus_copy_last_db") is not None:
            line += f"; minus copying the last context frame = {x['ours_minus_copy_last_db']:+.2f} dB"
        if used < ACTIONS_UNUSED_DB:
            line += (". **The models do not use their conditioning yet at this budget**: the rows differ by noise, "
                     "so the margins above are not a ranking. Raise `--budget-steps` (same work folder: runs "
                     "continue).")
        lines.append(line)
    if len(lines) and lines[-1] == "":
        lines.append("- (not enough finished rows yet)")
    lines.append("")
    lines += _modality_information_md(result.get("modality_information") or {})
    steps = meta["suite"].get("eval_steps")
    lines += [f"Evaluation: {meta['suite'].get('eval_clips') or 'all'} test clips per row, "
              f"{steps if steps else 'the preset default'} sampler step(s), one fixed noise draw per clip.", ""]
    refs = result.get("references") or {}
    if refs:
        lines += ["## Reference rows", "", "| Reference | " + " | ".join(LABELS[m] for m in METRICS) + " |",
                  "|---|" + "---:|" * len(METRICS)]
        for name, r in refs.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(m, r["metrics"].get(m)) for m in METRICS) + " |")
        lines.append("")

    unavailable: dict[str, str] = {}
    for t, title in meta["titles"].items():
        lines += [f"## {title}", "",
                  "| Method | " + " | ".join(LABELS[m] for m in METRICS) + " | paper "
                  + " | paper ".join(LABELS[m] for m in PAPER_METRICS) + " |",
                  "|---|" + "---:|" * (len(METRICS) + len(PAPER_METRICS))]  # fmt: skip
        for name, e in result[t].items():
            paper = e.get("paper") or {}
            pcols = " | ".join(_paper_fmt(m, paper.get(m)) for m in PAPER_METRICS)
            if e.get("status") != "done":
                lines.append(f"| {name} | " + " | ".join(["–"] * len(METRICS)) + f" | {pcols} |")
                continue
            unavailable.update(e.get("unavailable", {}))
            ours = " | ".join(_fmt(m, e["metrics"].get(m)) for m in METRICS)
            lines.append(f"| {name} | {ours} | {pcols} |")
        pending = {n: e["status"] for n, e in result[t].items() if e.get("status") != "done"}
        if pending:
            lines += [""] + [f"- {n}: {s}" for n, s in pending.items()]
        lines.append("")
    if unavailable:
        lines += ["## Unavailable metrics", ""] + [f"- **{k.upper()}**: {v}" for k, v in unavailable.items()] + [""]

    cf = result.get("control_fidelity") or {}
    lines += ["## Control fidelity (beyond the paper)", ""]
    if "edits" in cf:
        from mmsim.training.control import markdown as control_md

        lines.append(control_md(cf, title="Ours multisensory on edited trajectories, scored against the oracle"))
    else:
        lines += [f"- {cf.get('status', 'pending')}", ""]
    fig = meta.get("drift_figure", {})
    if "html" in fig:
        lines += ["## Temporal drift", "", f"Per-frame curves of {fig['rows_of']}: `{fig['html']}`"
                  + (f", `{fig['png']}`" if str(fig.get("png", "")).endswith(".png") else f" (PNG {fig.get('png')})"), ""]
    secs = {k: v for k, v in meta.get("train_seconds", {}).items() if v}
    if secs:
        lines += ["## Training time per variant (wall seconds, all sessions)", "",
                  ", ".join(f"{k}: {v:.0f}" for k, v in secs.items()), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def _add_paper_tables(sub) -> None:
    p = sub.add_parser("paper-tables", help="train and evaluate every paper variant; write results/paper_tables.*",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-steps", type=int, default=DEFAULT_BUDGET,
                   help=f"training steps of EVERY variant (default {DEFAULT_BUDGET})")
    p.add_argument("--config", default="demo-cpu", help=f"base training config {named_configs()} or a JSON file")
    p.add_argument("--preset", default=None, help="model preset for every variant (default: the config's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size for every variant (default: the config's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate for every variant (default: the config's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config key for every variant (as `mmsim train --set`)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--data", default=None, help="processed clip folder (default: synthetic data under WORK/data)")
    g.add_argument("--synth-subjects", type=int, default=None, help="synthetic subjects (default 6)")
    p.add_argument("--synth-seconds", type=float, default=120.0, help="seconds per synthetic recording (default 120)")
    p.add_argument("--synth-seed", type=int, default=0)
    p.add_argument("--work", default="runs/paper_tables", help="runs, evaluations and data (default runs/paper_tables)")
    p.add_argument("--out", default="results", help="where paper_tables.json/.md and the figure go (default results/)")
    p.add_argument("--only", default=None, help=f"comma-separated tables {list(ex.TABLE_KEYS)} (default: all)")
    p.add_argument("--variants", default=None, help="comma-separated variant keys to train/evaluate now; the other rows are filled from runs "
                   "finished earlier in the same --work (e.g. by another session), else reported pending")
    p.add_argument("--eval-clips", type=int, default=128, help="test clips per evaluation, spread over the split "
                   "(default 128; 0 = all)")
    p.add_argument("--eval-steps", type=int, default=None, help="sampler steps (default: the preset's)")
    p.add_argument("--control-clips", type=int, default=16, help="clips for control fidelity (default 16)")
    p.add_argument("--no-control", action="store_true", help="skip the control-fidelity evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true", help="print the variants and rows that would run, and exit")
    p.set_defaults(func=_run_paper_tables)


def suite_config_from_args(args) -> SuiteConfig:
    try:
        tables = ex.parse_tables(args.only)
    except ValueError as e:
        raise MMSimError(str(e)) from None
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None
    return SuiteConfig(
        work=args.work, out=args.out, tables=tables, variants=variants, budget_steps=args.budget_steps,
        config=args.config, preset=args.preset, batch_size=args.batch_size, lr=args.lr, overrides=tuple(args.overrides),
        data=args.data, synth_subjects=args.synth_subjects or 6, synth_seconds=args.synth_seconds,
        synth_seed=args.synth_seed, eval_clips=args.eval_clips or None, eval_steps=args.eval_steps,
        control_clips=args.control_clips, control=not args.no_control, seed=args.seed,
    )  # fmt: skip


def _run_paper_tables(args, argv) -> int:
    cfg = suite_config_from_args(args)
    suite = PaperTables(cfg, command="mmsim bench " + " ".join(shlex.quote(a) for a in argv))
    if args.list:
        print(f"{len(suite.variants)} variants to train ({cfg.budget_steps} steps each, config {cfg.config}):")
        for v in suite.variants:
            print(f"  {v.key:24s} data={v.data:16s} {v.description}")
        print(f"{len(suite.rows)} rows:")
        for r in suite.rows:
            print(f"  {r.table:8s} {r.name:28s} <- {r.variant} [{r.protocol}]")
        return 0
    result = suite.run()
    print(f"wrote {Path(cfg.out) / 'paper_tables.json'} and {Path(cfg.out) / 'paper_tables.md'}")
    for name, x in result["goals"].items():
        if isinstance(x, dict):
            print(f"  {name}: {json.dumps(x)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmsim bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="suite", required=True, metavar="SUITE")
    _add_paper_tables(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args, argv) or 0)
    except MMSimError as e:
        print(f"mmsim bench: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
