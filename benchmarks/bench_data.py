"""Data pipeline speed: ``mmsim preprocess`` wall time and ClipDataset loading throughput.

    python benchmarks/bench_data.py RAW_DIR [--out OUT] [--workers 2] [--size 64]
    python benchmarks/bench_data.py --processed OUT          # loading only

RAW_DIR: ActionSense-layout recordings (real ones, or ``mmsim synth RAW --subjects 6 --seconds 120``).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path


def bench_preprocess(raw: Path, out: Path, workers: int, size: int) -> dict:
    from mmsim_core.data import PreprocessConfig, preprocess
    from mmsim_core.data.preprocess import find_recordings
    from mmsim_core.video import video_info

    paths = find_recordings(raw)
    frames = 0
    for p in paths:
        for v in p.parent.glob("*eye-tracking-video-world*.mp4"):
            frames += video_info(v)["frames"]
    t0 = time.perf_counter()
    m = preprocess(raw, out, PreprocessConfig(size=size, workers=workers))
    dt = time.perf_counter() - t0
    n = sum(s["num_clips"] for s in m["splits"].values())
    disk = sum(f.stat().st_size for f in out.rglob("*.h5")) / 2**20
    per_split = ", ".join(f"{k} {v['num_clips']}" for k, v in m["splits"].items())
    print(f"preprocess: {len(paths)} recordings, {frames} video frames -> {n} clips ({per_split}) in {dt:.1f} s "
          f"with {workers} worker(s): {frames / dt:.0f} video frames/s, {n / dt:.0f} clips/s, shards {disk:.0f} MiB")
    return m


def bench_loading(out: Path, workers: int, n: int = 400, batch: int = 16) -> None:
    import torch

    from mmsim_core.data import ClipDataset, collate_clips

    torch.set_num_threads(2)
    ds = ClipDataset(out, "train")
    n = min(n, len(ds))
    ds[0]
    t0 = time.perf_counter()
    for i in range(n):
        ds[(i * 7919) % len(ds)]  # scattered access, like a shuffled epoch
    dt = time.perf_counter() - t0
    print(f"ClipDataset single process: {n / dt:.0f} clips/s (random access, {len(ds)} train clips)")
    ds = ClipDataset(out, "train", modality_drop=0.3)
    for nw in sorted({0, workers}):
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=nw,
                                             collate_fn=collate_clips, generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        seen = 0
        for b in loader:
            seen += b["context"].shape[0]
            if seen >= n:
                break
        dt = time.perf_counter() - t0
        print(f"DataLoader(batch {batch}, shuffle, modality_drop 0.3, num_workers={nw}): {seen / dt:.0f} clips/s "
              f"(incl. worker start-up)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("raw", type=Path, nargs="?", help="folder of recordings to preprocess")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one, removed)")
    p.add_argument("--processed", type=Path, default=None, help="benchmark loading of an existing output only")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--clips", type=int, default=400, help="clips to load in the loading benchmark")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.processed:
        bench_loading(args.processed, args.workers, args.clips)
        return 0
    if args.raw is None:
        p.error("give RAW (recordings folder) or --processed OUT")
    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="bench_data_")
        out = Path(tmp)
    try:
        bench_preprocess(args.raw, out, args.workers, args.size)
        bench_loading(out, args.workers, args.clips)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
