"""Time ``mmsim synth``: generate N subjects x S seconds of synthetic recordings and report throughput.

    python benchmarks/bench_synth.py --subjects 6 --seconds 120          # the default dataset
    python benchmarks/bench_synth.py --subjects 2 --seconds 30 --workers 2

Prints wall-clock seconds, world-video frames per second (all workers together) and the size written.
The default dataset should build in well under 2.5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="default: CPU count")
    ap.add_argument("--out", type=Path, default=None, help="keep the recordings here (default: a temp dir)")
    args = ap.parse_args(argv)

    from mmsim_core.synth import generate_dataset, load_oracle

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        t0 = time.perf_counter()
        paths = generate_dataset(out, subjects=args.subjects, seconds=args.seconds, seed=args.seed,
                                 workers=args.workers)
        wall = time.perf_counter() - t0
        frames = sum(load_oracle(p).num_frames for p in paths)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        workers = min(args.workers or os.cpu_count() or 1, args.subjects)
        print(f"synth: {args.subjects} subjects x {args.seconds:g} s, {workers} workers, {os.cpu_count()} CPUs")
        print(f"  wall time      {wall:8.1f} s")
        print(f"  video frames   {frames:8d}  ({frames / wall:.0f} frames/s, {frames / wall / workers:.0f} per worker)")
        recorded = args.subjects * args.seconds
        print(f"  recorded time  {recorded:8.0f} s  ({recorded / wall:.1f}x real time)")
        print(f"  written        {size / 1e6:8.1f} MB")
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
