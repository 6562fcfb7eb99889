"""How much could hand pose, EMG and force add over body pose at all? The oracle's ceiling for a checkpoint.

    python benchmarks/bench_margin_ceiling.py CKPT [CKPT ...] --data DATA [--split test] [--clips 64]
                                               [--threshold 0] [--dilate 1] [--out FILE.json]

Issue 4 asks Ours multisensory to beat Body-pose only by 1.5 dB. Beyond body pose, Ours hears hand pose,
EMG and force, and those only decide the pixels the world draws differently when they change (the
oracle renders each one held still; ``training.control.margin_ceiling``). Filling exactly those pixels of a
checkpoint's prediction with the truth gives its *ceiling*: what it would score with perfect use of the
three and nothing else changed. Run it on a Body-pose only checkpoint: ``ceiling - model`` estimates the
largest margin a model as accurate elsewhere can have over it. Prints, per checkpoint, model and ceiling
PSNR (against the oracle's frames, per frame on [0, 1], averaged), the gain, and the share of its squared
error in the mask; and the share of future pixels each modality decides.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    from mmsim.training.control import DIRECT_MODALITIES, margin_ceiling

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", required=True, help="processed synthetic clips (with oracle sidecars)")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=64, help="clips spread over the split (default 64)")
    p.add_argument("--modalities", default=",".join(DIRECT_MODALITIES), help="comma-separated (default: %(default)s)")
    p.add_argument("--threshold", type=int, default=0, help="uint8 levels a pixel must change by (default 0: any)")
    p.add_argument("--dilate", type=int, default=1, help="pixels the mask is grown by (default 1)")
    p.add_argument("--out", default=None, help="also write the report as JSON here")
    args = p.parse_args(argv)
    r = margin_ceiling(args.checkpoints, args.data, args.split, args.clips, args.modalities.split(","),
                       args.threshold, args.dilate)
    frac = r["mask_fraction"]
    print(f"{r['num_clips']} clips of {r['data']} ({r['split']}); mask = pixels that change when "
          f"{'/'.join(r['modalities'])} is held (> {r['threshold']} levels, grown {r['dilate']} px)")
    print("share of future pixels: " + ", ".join(f"{k} {v:.1%}" for k, v in frac.items()))
    print(f"{'checkpoint':48s} {'mask':>10s} {'model':>7s} {'ceiling':>8s} {'gain':>6s} {'MSE in mask':>12s}")
    for ckpt, c in r["checkpoints"].items():
        for name, x in [("all", c["all"]), *c["per_modality"].items()]:
            print(f"{ckpt[-48:]:48s} {name:>10s} {x['model_psnr']:7.2f} {x['ceiling_psnr']:8.2f} "
                  f"{x['ceiling_gain']:+6.2f} {x['share_of_mse_in_mask']:12.1%}")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
