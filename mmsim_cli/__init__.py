"""The ``mmsim`` command line.

It lives outside ``mmsim_core`` because it dispatches to every part of the project (the library,
``training/`` and ``app/``), while the library itself never imports those.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _csv(kind):
    def parse(text: str):
        return tuple(kind(t) for t in text.replace(",", " ").split() if t)

    return parse


def _flag_error(e: Exception, flags: dict[str, str]):
    """A library's ``"<field> must ..."`` message as a usage error naming the flag (``"--<flag> must ..."``)."""
    from mmsim_core.errors import UsageError

    text = str(e)
    for field, flag in flags.items():
        if text.startswith(field + " ") or text.startswith(field + ":"):
            text = flag + text[len(field):]
            break
    return UsageError(text)


def _check_out_folder(path: Path, what: str = "OUT") -> None:
    from mmsim_core.errors import UsageError

    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file; give a folder (it is created if missing)")


def _add_synth(sub):
    p = sub.add_parser("synth", help="generate recordings of the synthetic world in the ActionSense layout")
    p.add_argument("out", type=Path, help="output folder (one HDF5 + world mp4 per recording)")
    p.add_argument("--subjects", type=int, default=6, help="number of subjects (default 6)")
    p.add_argument("--seconds", type=float, default=120.0, help="length of each recording in seconds")
    p.add_argument("--seed", type=int, default=0, help="world seed (everything is deterministic per seed)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count)")
    p.add_argument("--counterfactuals", type=int, default=0, metavar="K",
                   help="also write K counterfactual variants per recording (same scene, edited actions) "
                        "under OUT/counterfactual/ (default 0)")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    from mmsim_core.synth import generate_dataset
    from mmsim_core.synth.script import SynthConfigError

    _check_out_folder(args.out)
    try:
        paths = generate_dataset(args.out, subjects=args.subjects, seconds=args.seconds, seed=args.seed,
                                 workers=args.workers, counterfactuals=args.counterfactuals)
    except SynthConfigError as e:
        raise _flag_error(e, {k: f"--{k}" for k in ("subjects", "seconds", "seed", "workers", "counterfactuals")}
                          ) from None
    extra = (f" (+ {len(paths) * args.counterfactuals} counterfactual variants in {args.out / 'counterfactual'})"
             if args.counterfactuals else "")
    print(f"wrote {len(paths)} recordings to {args.out}{extra}")
    return 0


def _add_preprocess(sub):
    p = sub.add_parser("preprocess", help="align, normalise and cut recordings into clip shards")
    p.add_argument("raw", type=Path, help="folder with ActionSense-layout recordings (searched recursively)")
    p.add_argument("out", type=Path, help="output folder for clip shards, manifest.json, normalization.json")
    p.add_argument("--size", type=int, default=64, help="square frame size after centre crop (default 64)")
    p.add_argument("--context", type=int, default=4, help="context frames h (default 4)")
    p.add_argument("--future", type=int, default=8, help="future frames F (default 8)")
    p.add_argument("--stride", type=int, default=4, help="window stride in sampled frames (default 4)")
    p.add_argument("--frame-steps", type=_csv(int), default=(1, 2, 3),
                   help="frame steps to resample with, e.g. '1,2,3' (paper §7.4: slow/normal/fast)")
    p.add_argument("--test-subjects", type=_csv(str), default=None,
                   help="subjects held out for the test split, e.g. 'S05' (default: the last subject); 'none' puts "
                        "every recording in train, 'all' every recording in test (with --stats)")
    p.add_argument("--include-maybe", action="store_true", help="keep activities rated Maybe as well as Good")
    p.add_argument("--shard-size", type=int, default=512, help="clips per HDF5 shard")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count)")
    p.add_argument("--stats", type=Path, default=None,
                   help="normalise with this normalization.json (e.g. CKPT/normalization.json) instead of "
                        "fitting on the train split: for evaluating a trained model on new recordings")
    p.add_argument("--bundle-oracles", action="store_true",
                   help="copy each synthetic recording's oracle (scene and world states, a small .oracle.npz) into "
                        "OUT/recordings/, so the clips can be re-rendered under edited actions without the raw "
                        "recordings (the studio's world view, mmsim control)")
    p.set_defaults(func=_run_preprocess)


def _run_preprocess(args) -> int:
    from mmsim_core.data.preprocess import PreprocessConfig, preprocess
    from mmsim_core.synth.recording import ORACLE_SUFFIX

    _check_out_folder(args.out)
    try:
        cfg = PreprocessConfig(size=args.size, context=args.context, future=args.future, stride=args.stride,
                               frame_steps=tuple(args.frame_steps), test_subjects=args.test_subjects,
                               include_maybe=args.include_maybe, shard_size=args.shard_size,
                               workers=args.workers, stats=str(args.stats) if args.stats else None,
                               bundle_sidecars=(ORACLE_SUFFIX,) if args.bundle_oracles else ())
    except ValueError as e:
        raise _flag_error(e, {k: f"--{k.replace('_', '-')}" for k in (
            "size", "context", "future", "stride", "frame_steps", "test_subjects", "shard_size", "workers",
            "stats")}) from None
    manifest = preprocess(args.raw, args.out, cfg)
    counts = ", ".join(f"{k}: {v['num_clips']} clips" for k, v in manifest["splits"].items())
    print(f"wrote {args.out / 'manifest.json'} ({counts})")
    return 0


def _add_convert(sub):
    p = sub.add_parser("convert", help="convert a pipeline folder saved by an older mmsim to the current layout")
    p.add_argument("src", type=Path, help="the old pipeline folder (model_index.json inside)")
    p.add_argument("dst", type=Path, help="a new folder for the converted pipeline (must not exist)")
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> int:
    from mmsim_core.conversion import convert_legacy_pipeline
    from mmsim_core.errors import UsageError

    if not (args.src / "model_index.json").is_file():
        raise UsageError(f"SRC {args.src} is not a pipeline folder (no model_index.json in it)")
    convert_legacy_pipeline(args.src, args.dst)
    print(f"wrote {args.dst} (same weights; the action warp is now its own component, simulator_config.json added)")
    return 0


DELEGATED = {
    "train": ("train a simulator (accelerate)", "mmsim.training.train"),
    "evaluate": ("evaluate a checkpoint on a split", "mmsim.training.evaluate"),
    "generate": ("generate a future video for one clip", "mmsim.training.generate"),
    "control": ("does a checkpoint follow edited actions? ('mmsim control visibility DATA': does the world show them)",
                "mmsim.training.control"),
    "policy": ("goal-conditioned policy: 'mmsim policy train' / 'mmsim policy evaluate' (simulator loss, oracle "
               "end states)", "mmsim.training.policy"),
    "proposer": ("action proposer: 'mmsim proposer train' (a diffusion model over action trajectories)",
                 "mmsim.training.proposer"),
    "scorer": ("the planner's goal scorer: 'mmsim scorer train' (simulated roll-outs labelled by the world's oracle)",
               "mmsim.training.scorer"),
    "plan": ("propose action trajectories, roll them out with the simulator, execute the best", "mmsim.training.plan"),
    "experiments": ("research experiments, e.g. 'paper-tables' ('mmsim experiments --help')",
                    "mmsim.training.experiments.cli"),
    "app": ("launch the Gradio studio", "mmsim.app.cli"),
    "space": ("write a Hugging Face Space folder that runs the studio", "mmsim.app.space"),
}


def _add_later(sub, name: str, help_text: str, module: str):
    """Subcommands implemented in training/ or app/: parsed there, so their flags live with them."""
    p = sub.add_parser(name, help=help_text, add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: _delegate(name, module, args.rest))


def _delegate(name: str, module: str, argv: list[str]) -> int:
    import importlib

    from mmsim_core.errors import MMSimError, exit_status

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name + ".")):
            print(f"mmsim {name}: not yet available in this version", file=sys.stderr)
            return 2
        raise
    try:
        return int(mod.main(argv) or 0)
    except MMSimError as e:  # subcommands print their own; this catches any that escapes them
        print(f"mmsim {name}: error: {_one_line(e)}", file=sys.stderr)
        return exit_status(e)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmsim", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_preprocess(sub)
    _add_convert(sub)
    for name, (help_text, module) in DELEGATED.items():
        _add_later(sub, name, help_text, module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        # Hand the whole rest of the line to the subcommand's own parser (argparse's REMAINDER
        # would refuse a rest that starts with an option, e.g. `mmsim app --checkpoint X`).
        name = argv[0]
        return _delegate(name, DELEGATED[name][1], argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from mmsim_core.errors import MMSimError, exit_status

    try:
        return int(args.func(args) or 0)
    except MMSimError as e:
        print(f"mmsim {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return exit_status(e)


if __name__ == "__main__":
    sys.exit(main())
