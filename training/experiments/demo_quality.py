"""Does the demo checkpoint use its actions? PSNR against copying the last context frame and against the same
model with every action dropped, on fresh synthetic clips.

    python -m mmsim.training.experiments.demo_quality [--checkpoint examples/demo_checkpoint] [--seed 7919] [--limit 256]

Generates ``--subjects`` synthetic recordings with a world seed the training data never used (default 7919;
training used seed 0), preprocesses every subject into the test split, then runs ``mmsim evaluate`` three
times on the same clips and noise: the checkpoint, ``--baseline copy-last`` and ``--baseline no-actions``.
Target: the checkpoint beats both baselines by >= 1 dB PSNR. Prints the figures, writes the three
results JSON/MD/HTML under ``--work``, exits 1 when a margin is under the target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TARGET_DB = 1.0


def held_out_data(work: Path, subjects: int, seconds: float, seed: int, workers: int, stats: Path) -> Path:
    """Recordings of a never-used world seed, all in the test split, normalised with the checkpoint's own
    statistics (``stats``): the model must see its inputs scaled as in training."""
    from mmsim_core.data import PreprocessConfig, preprocess
    from mmsim_core.synth import generate_dataset

    key = hashlib.sha256(stats.read_bytes()).hexdigest()[:10]
    raw, proc = work / f"raw-seed{seed}", work / f"processed-seed{seed}-stats{key}"
    if not (proc / "manifest.json").exists():
        t = time.perf_counter()
        if not raw.is_dir():
            generate_dataset(raw, subjects=subjects, seconds=seconds, seed=seed, workers=workers)
        names = tuple(f"S{i:02d}" for i in range(subjects))  # generate_dataset names them S00, S01, ...
        preprocess(raw, proc, PreprocessConfig(test_subjects=names, workers=workers, stats=str(stats)))
        print(f"held-out data: {subjects} subjects x {seconds:.0f} s, seed {seed} -> {proc} "
              f"({time.perf_counter() - t:.0f} s)")
    return proc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmsim.training.experiments.demo_quality",
                                description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(REPO / "examples" / "demo_checkpoint"))
    p.add_argument("--data", default=None, help="processed clips to use instead of generating them")
    p.add_argument("--work", default="/tmp/mmsim_demo_quality")
    p.add_argument("--seed", type=int, default=7919, help="world seed of the held-out recordings")
    p.add_argument("--subjects", type=int, default=2)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--limit", type=int, default=256, help="clips, spread evenly over the split (0 = all)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)

    from mmsim.training.evaluate import EvalConfig, evaluate, write_results

    work = Path(args.work)
    if args.data:
        data = Path(args.data)
    else:
        from mmsim_core.evaluation.loading import resolve_checkpoint

        stats = Path(resolve_checkpoint(args.checkpoint)) / "normalization.json"
        if not stats.is_file():
            p.error(f"{stats} not found: the checkpoint must be a local pipeline folder (or pass --data)")
        data = held_out_data(work, args.subjects, args.seconds, args.seed, args.workers, stats)
    common = dict(data=str(data), split="test", limit=args.limit or None, num_inference_steps=args.steps,
                  lpips_net=None)
    runs = {
        "checkpoint": EvalConfig(checkpoint=args.checkpoint, label="demo checkpoint", **common),
        "copy-last": EvalConfig(checkpoint=None, baseline="copy-last", label="copy last context frame", **common),
        "no-actions": EvalConfig(checkpoint=args.checkpoint, baseline="no-actions", label="all actions dropped",
                                 **common),
    }
    results = {}
    for key, cfg in runs.items():
        results[key] = evaluate(cfg, progress=False)
        write_results(results[key], work / f"{key}.json")

    ours = results["checkpoint"]["metrics"]["psnr"]
    print(f"checkpoint: {args.checkpoint}")
    print(f"clips: {results['checkpoint']['num_clips']} from {data} "
          f"({results['checkpoint']['settings']['num_inference_steps']} sampler steps)")
    print(f"{'':26s} {'PSNR dB':>8s} {'SSIM':>6s} {'margin dB':>10s}")
    ok = True
    for key, res in results.items():
        m = res["metrics"]
        margin = ours - m["psnr"]
        if key != "checkpoint":
            ok &= margin >= TARGET_DB
        print(f"{res['label']:26s} {m['psnr']:8.2f} {m['ssim']:6.3f} "
              f"{'' if key == 'checkpoint' else f'{margin:+10.2f}'}")
    print(f"target: >= {TARGET_DB:.1f} dB over both baselines: {'met' if ok else 'NOT met'}")
    summary = {k: {**r["metrics"], "num_clips": r["num_clips"]} for k, r in results.items()}
    (work / "summary.json").write_text(json.dumps({"checkpoint": args.checkpoint, "data": str(data),
                                                   "seed": args.seed, "results": summary, "target_met": ok},
                                                  indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
