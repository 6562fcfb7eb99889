"""Speed and size of the multisensory action encoder and the small context encoder.

    python benchmarks/bench_action_encoder.py [--threads 2] [--device cpu] [--repeats 5]

Prints parameter counts (compare paper Table 5: expert encoders 43.8 M, projections 11.5 M,
decoders 28.4 M at d = 1024 — the paper's experts take 8 stacked steps, ours one step) and the
time of an inference forward pass and a training step (forward + backward) for the CPU preset
size (d = 256) and the paper size (d = 1024), with and without channel anchoring.
"""

from __future__ import annotations

import argparse
import time

import torch

from mmsim_core.models import MultisensoryActionEncoder, SmallContextEncoder
from mmsim_core.schema import MODALITIES, MODALITY_NAMES


def count(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    h, T = 4, 12

    print(f"device={dev} threads={args.threads}")
    for d, proj, batch in ((256, (256, 256), 8), (1024, (512, 768), 18)):
        for anchoring in ("channel_attention", "none"):
            enc = MultisensoryActionEncoder(feature_dim=d, projection_dims=proj, anchoring=anchoring).to(dev)
            acts = {m: torch.rand(batch, T, *MODALITIES[m].shape, device=dev) for m in MODALITY_NAMES}
            ctx = torch.randn(batch, h, d, device=dev)
            target = torch.randn(batch, T, d, device=dev)
            if anchoring == "channel_attention":
                parts = {
                    "experts": count(enc.experts), "projections": count(enc.projections),
                    "decoders": count(enc.decoders), "anchoring": count(enc.channel_anchoring), "total": count(enc),
                }  # fmt: skip
                print(f"d={d}: params (M) " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))

            def infer():
                with torch.no_grad():
                    enc.eval()(acts, ctx)

            def train():
                out = enc.train()(acts, ctx, target_features=target)
                (out.interaction.square().mean() + out.ssl_loss + 0.1 * out.norm_loss).backward()

            ti, tt = timed(infer, args.repeats, dev), timed(train, args.repeats, dev)
            print(f"d={d} B={batch} anchoring={anchoring:17s} inference {ti:8.1f} ms   train step {tt:8.1f} ms")

    ctx_enc = SmallContextEncoder(feature_dim=256).to(dev).eval()
    frames = torch.rand(1, h, 3, 64, 64, device=dev) * 2 - 1

    def encode():
        with torch.no_grad():
            ctx_enc.encode(frames)

    print(f"SmallContextEncoder d=256: {count(ctx_enc):.2f} M params, {timed(encode, args.repeats, dev):.1f} ms for {h} frames")


if __name__ == "__main__":
    main()
