"""Studio load test: N concurrent API users, a fixed number of renders, on loopback only.

    python benchmarks/bench_studio_load.py [--checkpoint examples/demo_checkpoint] [--users 8] [--renders 200]
                                           [--steps N] [--threads 2] [--timeout 1800]

Starts ``mmsim app`` as its own process on 127.0.0.1 (a free port; never another interface), then runs
``--users`` gradio_client users side by side. Each user loops: load a gallery clip, apply a range edit,
Generate; the users share ``--renders`` renders between them. Prints the error count (the check is zero
errors), p50/p95 latency of a Generate call as a user sees it (queueing included) and of a whole
load-edit-generate round, throughput, and the server process's resident memory (psutil) before the first
render, after the warm-up renders, every 25 renders and at the end: growth after the warm-up that keeps
climbing is what a leak would show. Bounded: every call has a timeout (``--call-timeout``), no render starts
after ``--timeout`` seconds, and the server is stopped on the way out (SIGTERM included).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, limit_s: float = 300.0) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if proc.poll() is not None:
            raise SystemExit(f"the studio exited with status {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the studio did not answer at {url} within {limit_s:.0f} s")


def rss_mb(proc) -> float:
    """Resident memory of the server and its children (ffmpeg writers are children while they run)."""
    import psutil

    p = psutil.Process(proc.pid)
    total = p.memory_info().rss
    for c in p.children(recursive=True):
        try:
            total += c.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def pct(xs, q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="pipeline folder (default: the demo checkpoint)")
    p.add_argument("--data", default=str(REPO / "examples" / "demo_data"))
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--renders", type=int, default=200)
    p.add_argument("--steps", type=int, default=0, help="sampler steps per render (0: the checkpoint's default)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads in the server")
    p.add_argument("--warmup", type=int, default=8, help="renders before the memory baseline")
    p.add_argument("--timeout", type=float, default=1800.0, help="start no render after this many seconds")
    p.add_argument("--call-timeout", type=float, default=600.0, help="seconds one API call may take")
    args = p.parse_args()

    from gradio_client import Client

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop the server too

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "mmsim.app.cli", "--host", "127.0.0.1", "--port", str(port),
           "--data", args.data, "--threads", str(args.threads)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"mmsim_load_{port}.log", "w")
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_up(url, server)
        print(f"studio: {url} (pid {server.pid}, log {log.name})")
        mem_start = rss_mb(server)
        lock = threading.Lock()
        counter = {"next": 0}
        deadline = time.perf_counter() + args.timeout
        gen_lat, round_lat, errors = [], [], []
        mem_warm = [None]
        mem_series: list[tuple[int, float]] = []
        steps = args.steps or None

        def take() -> int | None:
            with lock:
                if counter["next"] >= args.renders or time.perf_counter() > deadline:
                    return None
                counter["next"] += 1
                return counter["next"]

        def call(c, api: str, **kw):
            return c.submit(api_name=api, **kw).result(timeout=args.call_timeout)

        def user(u: int) -> None:
            c = Client(url, verbose=False)
            while (n := take()) is not None:
                try:
                    t0 = time.perf_counter()
                    call(c, "/load_clip", clip=(u * 7 + n) % 16, modality="emg", channels=["L1", "R2"])
                    call(c, "/range_edit", modality="emg", channels=["L1", "R2"], cursor=0, start=4, end=11,
                         operation="scale", amount=1.0 + (n % 5) * 0.5)
                    t1 = time.perf_counter()
                    kw = {"seed": n} if steps is None else {"seed": n, "steps": steps}
                    report = call(c, "/generate", **kw)[2]
                    t2 = time.perf_counter()
                    if "Rendered" not in report:
                        raise RuntimeError(f"unexpected report: {report[:120]!r}")
                    with lock:
                        gen_lat.append(t2 - t1)
                        round_lat.append(t2 - t0)
                        if len(gen_lat) == args.warmup:
                            mem_warm[0] = rss_mb(server)
                        if len(gen_lat) % 25 == 0:  # the series tells a plateau (caches filling) from a leak
                            mem_series.append((len(gen_lat), rss_mb(server)))
                except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                    with lock:
                        errors.append(f"render {n} (user {u}): {type(e).__name__}: {str(e)[:200]}")

        t_start = time.perf_counter()
        with ThreadPoolExecutor(args.users) as pool:
            list(pool.map(user, range(args.users)))
        wall = time.perf_counter() - t_start
        mem_end = rss_mb(server)
        done = len(gen_lat)
        warm = mem_warm[0] if mem_warm[0] is not None else mem_start
        rows = [
            ("users (concurrent gradio_client)", f"{args.users}"),
            ("renders asked / completed", f"{args.renders} / {done}"),
            ("errors", f"{len(errors)}  ({'OK: zero errors' if not errors and done == args.renders else 'FAILED'})"),
            ("Generate latency p50 / p95", f"{pct(gen_lat, 0.5):.2f} s / {pct(gen_lat, 0.95):.2f} s"),
            ("load+edit+Generate round p50 / p95", f"{pct(round_lat, 0.5):.2f} s / {pct(round_lat, 0.95):.2f} s"),
            ("Generate latency max", f"{max(gen_lat) if gen_lat else float('nan'):.2f} s"),
            ("wall time / throughput", f"{wall:.1f} s / {done / wall if wall else 0:.2f} renders/s"),
            ("server RSS at start", f"{mem_start:.0f} MB"),
            (f"server RSS after {args.warmup} warm-up renders", f"{warm:.0f} MB"),
            ("server RSS at end", f"{mem_end:.0f} MB"),
            ("RSS growth start->end / warm-up->end", f"{mem_end - mem_start:+.0f} MB / {mem_end - warm:+.0f} MB"),
        ]
        w = max(len(r[0]) for r in rows)
        print(f"\nmmsim studio load test ({'checkpoint ' + args.checkpoint if args.checkpoint else 'demo checkpoint'}, "
              f"server threads {args.threads})")
        print("-" * (w + 40))
        for k, v in rows:
            print(f"{k:<{w}}  {v}")
        print("-" * (w + 40))
        if mem_series:
            print("server RSS by renders done: " + ", ".join(f"{n}: {m:.0f} MB" for n, m in mem_series))
        for e in errors[:5]:
            print(f"  {e}")
        if gen_lat:
            print(f"Generate latency median {statistics.median(gen_lat):.2f} s over {done} renders")
        return 0 if not errors and done == args.renders else 1
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())
