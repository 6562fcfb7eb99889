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
    from training.control import modality_information

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
    print(f"\nIssue 4's goals (margin >= {f['margin_db']} dB over every single modality, any drop <= {f['drop_db']} dB)"
          f" need, per modality, loss(m unknown) / loss(only m known) <= {f['ratio_required']:.2f}"
          f" (guesses: {', '.join(f'{m} {g}' for m, g in r['guess'].items())}):")
    for m, x in f["modalities"].items():
        print(f"  {m:10s} {x['unknown_mse']:.5f} / {x['alone_mse']:.5f} = {x['ratio']:6.2f}  "
              f"{'possible' if x['feasible'] else 'impossible'}")
    print(f"both goals at once: {'possible' if f['feasible'] else 'ruled out (additive errors, these guesses)'}")
    print(f"\nThe text margin (>= {f['margin_db']} dB) with the drop goal needs, per modality, loss(m unknown) / "
          f"loss(nothing known) <= {f['ratio_required']:.2f}:")
    for m, x in f["modalities"].items():
        v = x["vs_text"]
        print(f"  {m:10s} {x['unknown_mse']:.5f} / {v['nothing_known_mse']:.5f} = {v['ratio']:6.2f}  "
              f"{'possible' if v['feasible'] else 'impossible'}")
    print(f"both goals at once: {'possible' if f['feasible_vs_text'] else 'ruled out (additive errors, these guesses)'}")
    print(f"({r['seconds']:.0f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
