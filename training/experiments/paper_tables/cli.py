"""``mmsim experiments paper-tables``: the paper's Tables 1, 2, 3a, 3b, 8-12 on the synthetic benchmark, plus
counterfactual control fidelity.

    mmsim experiments paper-tables --budget-steps 2000                  # everything, default data and config
    mmsim experiments paper-tables --only table1,table3a --eval-clips 64
    mmsim experiments paper-tables --data data/processed --work runs/paper_tables --out results/
    mmsim experiments paper-tables --list                                # the plan: variants and rows

See :mod:`.suite` for what it does and how it resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from mmsim_core.errors import MMSimError
from mmsim.training.config import named_configs
from mmsim.training.experiments.paper_tables import variants as registry
from mmsim.training.experiments.paper_tables.suite import DEFAULT_BUDGET, PaperTables, SuiteConfig

PROG = "mmsim experiments paper-tables"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", ""))
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
    p.add_argument("--only", default=None, help=f"comma-separated tables {list(registry.TABLE_KEYS)} (default: all)")
    p.add_argument("--variants", default=None, help="comma-separated variant keys to train/evaluate now; the other "
                   "rows are filled from runs finished earlier in the same --work (e.g. by another session), else "
                   "reported pending")
    p.add_argument("--eval-clips", type=int, default=128, help="test clips per evaluation, spread over the split "
                   "(default 128; 0 = all)")
    p.add_argument("--eval-steps", type=int, default=None, help="sampler steps (default: the preset's)")
    p.add_argument("--control-clips", type=int, default=16, help="clips for control fidelity (default 16)")
    p.add_argument("--no-control", action="store_true", help="skip the control-fidelity evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true", help="print the variants and rows that would run, and exit")
    return p


def suite_config_from_args(args) -> SuiteConfig:
    try:
        tables = registry.parse_tables(args.only)
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


def _print_plan(suite: PaperTables) -> None:
    cfg = suite.cfg
    print(f"{len(suite.variants)} variants to train ({cfg.budget_steps} steps each, config {cfg.config}):")
    for v in suite.variants:
        print(f"  {v.key:24s} data={v.data:16s} {v.description}")
    print(f"{len(suite.rows)} rows:")
    for r in suite.rows:
        print(f"  {r.table:8s} {r.name:28s} <- {r.variant} [{r.protocol}]")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = suite_config_from_args(args)
        suite = PaperTables(cfg, command=" ".join([PROG, *(shlex.quote(a) for a in argv)]))
        if args.list:
            _print_plan(suite)
            return 0
        result = suite.run()
    except MMSimError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {Path(cfg.out) / 'paper_tables.json'} and {Path(cfg.out) / 'paper_tables.md'}")
    for name, x in result["targets"].items():
        if isinstance(x, dict):
            print(f"  {name}: {json.dumps(x)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
