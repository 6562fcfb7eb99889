"""Is each modality's information really in the video? Measured with the synthetic world's oracle alone.

    python benchmarks/bench_modality_information.py --data DATA [--split test] [--clips 64] [--out FILE.json]

For test clips of synthetic recordings, the oracle re-renders the future with one modality's future held
at its last history value (``training.control.modality_information``). The PSNR between that video and
the video of the recorded actions is what not knowing that modality costs: a model's margin from a
modality cannot exceed it by much. Prints one line per modality held, per pose extrapolated, per modality
known alone (the others guessed), per part of body pose held, and the two bounds (every modality held,
copying the last frame); then whether issue 4's margin and drop goals can hold together on these losses
(``training.control.FEASIBLE_RATIO``). ``--data`` is a processed folder of synthetic recordings
(``mmsim synth`` + ``mmsim preprocess``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    from mmsim.training.control import modality_information

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="processed synthetic clips (with oracle sidecars)")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=64, help="clips spread over the split (default 64)")
    p.add_argument("--out", default=None, help="also write the report as JSON here")
    args = p.parse_args(argv)
    r = modality_information(args.data, args.split, args.clips)
    print(f"{r['num_clips']} clips of {r['data']} ({r['split']}); oracle future vs oracle future with ...")
    print(f"{'':28s} {'MSE':>9s} {'PSNR of mean MSE':>17s} {'mean clip PSNR':>15s}  clips visibly changed "
          f"(< {r['visible_psnr']:.0f} dB)")
    rows = [(f"{m} held", x) for m, x in r["held"].items()]
    rows += [(f"{m} extrapolated", x) for m, x in r["extrapolated"].items()]
    rows += [(f"only {m} known", x) for m, x in r["alone"].items()]
    rows += [(f"body_pose {part} held", x) for part, x in r["body_parts"].items()]
    rows += [("every modality held", r["every_modality_held"]), ("copy last frame", r["copy_last_frame"])]
    for name, x in rows:
        print(f"{name:28s} {x['mse']:9.5f} {x['psnr_pooled']:17.2f} {x['psnr']:15.2f}  {x['visible_clips']}/{r['num_clips']}")
    f = r["feasibility"]

    def ratios(goals: str, denominator: str, other, feasible: bool, note: str = "") -> None:
        print(f"\n{goals} need, per modality, loss(m unknown) / loss({denominator}) <= {f['ratio_required']:.2f}{note}:")
        for m, x in f["modalities"].items():
            mse, ratio, ok = other(x)
            print(f"  {m:10s} {x['unknown_mse']:.5f} / {mse:.5f} = {ratio:6.2f}  {'possible' if ok else 'impossible'}")
        print(f"both goals at once: {'possible' if feasible else 'ruled out (additive errors, these guesses)'}")

    ratios(f"Issue 4's goals (margin >= {f['margin_db']} dB over every single modality, any drop <= {f['drop_db']} dB)",
           "only m known", lambda x: (x["alone_mse"], x["ratio"], x["feasible"]), f["feasible"],
           f" (guesses: {', '.join(f'{m} {g}' for m, g in r['guess'].items())})")
    ratios(f"The text margin (>= {f['margin_db']} dB) and the drop goal", "nothing known",
           lambda x: (x["vs_text"]["nothing_known_mse"], x["vs_text"]["ratio"], x["vs_text"]["feasible"]),
           f["feasible_vs_text"])
    print(f"({r['seconds']:.0f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
