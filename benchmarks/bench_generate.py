"""Generation speed of the CPU preset vs a diffusers UNet3DConditionModel of similar size.

    python benchmarks/bench_generate.py [--preset mmsim-cpu] [--runs 7] [--threads 2] [--no-unet3d]
    python benchmarks/bench_generate.py --checkpoint examples/demo_checkpoint --no-unet3d   # the shipped model

Measures ``pipe(context, actions)`` end to end (context encoder, action encoder, every sampler step,
uint8 output): 8 future frames at 64x64 from 4 context frames and all four modalities, batch 1,
the preset's default sampler settings. TARGET for mmsim-cpu on 2 cores: median <= 1.0 s. With
``--checkpoint`` the trained pipeline is timed on a demo clip with its default sampler: TARGET for the
studio's checkpoint, median <= 0.25 s (interactive).
Then the same sampling loop with a diffusers ``UNet3DConditionModel`` (attention at 32x32/16x16, the
usual video UNet) of similar parameter count, same scheduler and number of steps.
Peak memory: the rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs)
during one generate call, and tracemalloc's Python-heap peak.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc

import numpy as np
import torch


def load_str() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg() + f" on {os.cpu_count()} cores"
    except OSError:
        return "load average n/a"


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def randomize_zero_init(module: torch.nn.Module, std: float = 0.02) -> None:
    # An untrained denoiser has zero output layers; timing must not depend on it, but be safe.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)


def time_calls(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mmsim-cpu")
    ap.add_argument("--checkpoint", default=None, help="time this trained pipeline folder instead of a preset")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--unet-runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="override num_inference_steps")
    ap.add_argument("--no-unet3d", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mmsim_core.models.denoiser import count_parameters
    from mmsim_core.pipelines import MultisensoryVideoPipeline
    from mmsim_core.schema import MODALITIES

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {load_str()}")
    if args.checkpoint:
        from mmsim_core.data import ClipDataset

        pipe = MultisensoryVideoPipeline.from_pretrained(args.checkpoint)
        name, target = args.checkpoint, 0.25
        item = ClipDataset("examples/demo_data", split="test")[0]  # a real clip: the hands where they would be
        ctx = item["context"][None]
        acts = {n: v[None] for n, v in item["actions"].items()}
    else:
        pipe = MultisensoryVideoPipeline.from_preset(args.preset)
        randomize_zero_init(pipe.denoiser)
        name, target = f"preset {args.preset}", 1.0
        rng = np.random.default_rng(0)
        h, s = pipe.context_frames, pipe.sample_size
        ctx = rng.integers(0, 256, (1, h, s, s, 3), dtype=np.uint8)
        acts = {n: rng.random((1, h + pipe.future_frames, *spec.shape), dtype=np.float32)
                for n, spec in MODALITIES.items()}
    pipe.set_progress_bar_config(disable=True)
    steps = args.steps or pipe.config.default_num_inference_steps
    h, f, s = pipe.context_frames, pipe.future_frames, pipe.sample_size

    params = {k: count_parameters(getattr(pipe, k)) for k in ("denoiser", "action_encoder", "context_encoder")}
    print(f"{name}: sampler {type(pipe.scheduler).__name__} "
          f"({pipe.scheduler.config.get('algorithm_type') or pipe.scheduler.config.get('solver_type', '')}), prediction {pipe.scheduler.config.prediction_type}, "
          f"{steps} steps; params " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in params.items())
          + f", total {sum(params.values()) / 1e6:.2f} M")  # fmt: skip

    def generate():
        return pipe(context=ctx, actions=acts, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))

    # First call (cold: allocations, oneDNN primitive caches) doubles as warm-up and memory probe.
    can_reset = reset_peak_rss()
    base = rss_kib("VmRSS")
    generate()
    cold_peak = rss_kib("VmHWM") - base
    times = time_calls(generate, args.runs)
    med = statistics.median(times)
    print(f"mmsim generate ({f} frames {s}x{s}, h={h}, 4 modalities, batch 1): median {med:.3f} s over {args.runs} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}); {load_str()}")  # fmt: skip
    print(f"  TARGET <= {target} s: {'MET' if med <= target else 'NOT MET'}")

    # Per-part breakdown: one denoiser forward, and the encoders.
    with torch.no_grad():
        frames, feats = pipe.encode_context(ctx)
        y = pipe.encode_actions(acts, feats)
        x = torch.randn(1, f, 3, s, s)
        t_den = statistics.median(time_calls(lambda: pipe.denoiser(x, 500, frames, y), 5))
        t_ctx = statistics.median(time_calls(lambda: pipe.encode_context(ctx), 5))
        t_act = statistics.median(time_calls(lambda: pipe.encode_actions(acts, feats), 5))
    print(f"  parts: denoiser forward {t_den * 1e3:.1f} ms x {steps} steps, context encoder {t_ctx * 1e3:.1f} ms, "
          f"action encoder {t_act * 1e3:.1f} ms")  # fmt: skip

    # Peak memory of one (warm) generate call.
    reset_peak_rss()
    base = rss_kib("VmRSS")
    tracemalloc.start()
    generate()
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = rss_kib("VmHWM")
    if can_reset:
        rss_note = f"peak RSS rise: first call {cold_peak / 1024:.1f} MiB, warm call {(peak - base) / 1024:.1f} MiB"
    else:
        rss_note = "peak RSS reset unavailable"
    print(f"  memory of generate: {rss_note} (process peak {peak / 1024:.0f} MiB incl. the models), "
          f"Python-heap peak (tracemalloc) {py_peak / 2**20:.2f} MiB")

    if args.no_unet3d:
        return
    # A diffusers video UNet of similar size, same scheduler and steps, same inputs (context frames
    # concatenated on channels, y° as the cross-attention sequence).
    from diffusers import UNet3DConditionModel

    d = pipe.denoiser.config.cross_attention_dim
    unet = UNet3DConditionModel(
        sample_size=s, in_channels=3 * (1 + h), out_channels=3,
        block_out_channels=(64, 96, 128, 192), layers_per_block=1,
        down_block_types=("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"),
        cross_attention_dim=d, attention_head_dim=32, norm_num_groups=32,
    ).eval()  # fmt: skip
    n_unet = count_parameters(unet)
    sched = pipe.scheduler

    @torch.no_grad()
    def unet_generate():
        ctx_frames, feats = pipe.encode_context(ctx)
        y = pipe.encode_actions(acts, feats)
        sched.set_timesteps(steps)
        lat = torch.randn(1, 3, f, s, s, generator=torch.Generator().manual_seed(0))  # (B, C, F, H, W)
        cond = ctx_frames.permute(0, 2, 1, 3, 4).reshape(1, 3 * h, 1, s, s).expand(-1, -1, f, -1, -1)
        for t in sched.timesteps:
            inp = torch.cat([sched.scale_model_input(lat, t), cond], dim=1)
            pred = unet(inp, t, encoder_hidden_states=y).sample
            lat = sched.step(pred, t, lat).prev_sample
        return lat

    unet_generate()
    unet_times = time_calls(unet_generate, args.unet_runs)
    umed = statistics.median(unet_times)
    print(f"diffusers UNet3DConditionModel ({n_unet / 1e6:.2f} M params vs denoiser {params['denoiser'] / 1e6:.2f} M), "
          f"same {steps}-step loop: median {umed:.3f} s over {args.unet_runs} runs; {load_str()}")  # fmt: skip
    print(f"  speed-up of the mmsim denoiser: {umed / med:.1f}x")


if __name__ == "__main__":
    main()
