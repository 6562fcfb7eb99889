"""The paper-table suite: train every variant of the asked tables from ONE base config, evaluate every row
on the held-out subject, and write ``OUT/paper_tables.json`` / ``.md`` and the temporal-drift figure.

    from mmsim.training.experiments.paper_tables.suite import PaperTables, SuiteConfig
    result = PaperTables(SuiteConfig(tables=("table1", "table3a"), budget_steps=1000)).run()

What it does, in order, for the tables asked for:

1. **Data.** ``data`` (a ``mmsim preprocess`` folder), or synthetic recordings (``synth_subjects``,
   ``synth_seconds``, ``synth_seed``) generated and preprocessed under ``WORK/data`` once (the last subject is
   the held-out test subject, like the paper's subject 5). Table 11's h=1 models use the same clips cut to their
   last context frame; Table 12 re-preprocesses the same recordings with another subject held out.
2. **Training.** Every variant (:mod:`.variants`) is trained with ``train(cfg)`` from ONE base config: same
   backbone, steps, batch size, lr, schedule, EMA and seed for all. Runs live in ``WORK/runs/<variant>``.
3. **Evaluation** of every row with ``evaluate(EvalConfig)`` on the held-out subject (``eval_clips`` clips
   spread over the test split, one fixed noise draw per clip), test-time drop/keep for Tables 3a, 9, 10 on the
   one "Ours" model; the reference rows (copying the last context frame, Ours with every action dropped); the
   oracle's modality information and margin ceiling (synthetic data only). Cached in ``WORK/evals``.
4. **Control fidelity** (:mod:`mmsim.training.control`) of the "Ours" model on edited trajectories.
5. **Reports**: ``OUT/paper_tables.json`` (keys ``table1`` ... ``table12``, rows keyed by the paper's row
   names, our MSE/PSNR/SSIM/LPIPS/FVD — LPIPS/FVD only with their real weights, else ``null`` with the
   reason — and the paper's numbers beside; ``control_fidelity``; ``targets`` (:mod:`.margins`); the exact
   command, budget and machine), ``OUT/paper_tables.md`` (:mod:`.report`) and the temporal-drift figure
   ``OUT/paper_tables_drift.html`` (+ ``.png`` when kaleido is installed).

Resumable at variant granularity: a finished variant (``WORK/runs/<v>/bench_done.json`` for this budget)
and its evaluations are reused; an interrupted training resumes from its last checkpoint
(``train(cfg, resume=True)``); raising the budget later continues the finished runs to the new budget. A run
folder trained with a different config is never silently reused (clear error instead).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from mmsim_core.errors import MMSimError
from mmsim.training.config import TrainConfig, resolve_config
from mmsim.training.experiments.paper_tables import variants as registry
from mmsim.training.experiments.paper_tables.margins import margins
from mmsim.training.experiments.paper_tables.report import METRICS, markdown

logger = logging.getLogger("mmsim.experiments.paper_tables")

RESULTS_FORMAT = "mmsim-paper-tables-v2"
"""v2: the margins section is ``targets`` (v1 called it ``goals``)."""
# Keys that do not change what a run learns: they may differ between sessions of one resumable run.
BOOKKEEPING = ("max_steps", "checkpoint_every", "log_every", "keep_checkpoints", "out", "num_workers", "log_with")
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
    tables: tuple[str, ...] = registry.TABLE_KEYS
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
            unknown = [v for v in self.variants if v not in registry.VARIANTS]
            if unknown:
                raise MMSimError(f"unknown variant(s) {unknown}; variants are {list(registry.VARIANTS)}")

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
        self.command = command or "mmsim experiments paper-tables"
        self.base = cfg.base_train_config()
        self.rows = registry.rows(cfg.tables)
        self.variants = [v for v in registry.variants_for(cfg.tables) if cfg.variants is None or v.key in cfg.variants]
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
        if kind == registry.MAIN:
            return main
        if kind == registry.CONTEXT1:
            path = self.work / "data" / "context1"
            m = path / "manifest.json"
            if not m.is_file() or json.loads(m.read_text()).get("derived_from", {}).get("path") != str(main):
                logger.info("cutting %s to one context frame -> %s", main, path)
                registry.slice_context(main, path, 1)
        elif kind.startswith(registry.HOLDOUT):
            subject = kind[len(registry.HOLDOUT):]
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

    def train_variant(self, v: registry.Variant, allow_train: bool = True) -> dict | None:
        """Train (or reuse, or resume) one variant; returns its bench_done.json record. With
        ``allow_train=False`` only a finished run is returned (None otherwise)."""
        from mmsim.training.train import latest_checkpoint, train

        data = self.data_for(v.data)
        want = _fingerprint(registry.train_config(v, self.base, data, "."))
        for key, fp in self._fingerprints.items():  # the same model under another row name: train it once
            if fp == want:
                logger.info("variant %s: same data and config as %s, reusing that run", v.key, key)
                self.alias[v.key] = self.alias.get(key, key)
                return self.train_log.get(key)
        self._fingerprints[v.key] = want
        run = self.run_dir(v.key)
        cfg = registry.train_config(v, self.base, data, run)
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
    def evaluate_row(self, row: registry.Row, trained: dict, allow_eval: bool = True) -> dict | None:
        """Evaluate one row (cached in WORK/evals); with ``allow_eval=False`` only the cache is read."""
        from mmsim.training.evaluate import EvalConfig, evaluate

        v = registry.VARIANTS[row.variant]
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

        data = self.data_for(registry.MAIN)
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
        (no model; see :mod:`mmsim.training.experiments.modality_information`). Synthetic data only."""
        from mmsim.training.experiments.modality_information import FORMAT, modality_information

        data = self.data_for(registry.MAIN)
        key = {"data": str(data), "clips": self.cfg.eval_clips, "format": FORMAT}
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
        EMG and force decide filled by the truth (:mod:`mmsim.training.experiments.margin_ceiling`). Synthetic data
        only."""
        from mmsim.training.experiments.margin_ceiling import margin_ceiling

        runs = {"Body-pose only": "only-body-pose", "Ours multisensory": "ours"}
        if any(k not in self.train_log for k in runs.values()):
            return
        data = self.data_for(registry.MAIN)
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

        data = self.data_for(registry.MAIN)
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
        for v in registry.variants_for(self.cfg.tables):
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
    def _row_entry(self, row: registry.Row) -> dict:
        v = registry.VARIANTS[row.variant]
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

    def write(self, seconds: float | None = None) -> dict:
        tables = {t: {r.name: self._row_entry(r) for r in registry.TABLES[t]} for t in self.cfg.tables}
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
            "targets": margins(tables, self.references),
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
                "titles": {t: registry.TABLE_TITLES[t] for t in self.cfg.tables},
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
        fig.update_layout(title=f"Temporal drift: metrics per predicted frame ({registry.TABLE_TITLES[src]})")
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
