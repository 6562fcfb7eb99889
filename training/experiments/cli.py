"""``mmsim experiments NAME ...``: run one experiment; the rest of the line goes to its own parser.

    mmsim experiments paper-tables --list
    mmsim experiments modality-information --data DATA --clips 64
    mmsim experiments margin-ceiling CKPT [CKPT ...] --data DATA
"""

from __future__ import annotations

import importlib
import sys

EXPERIMENTS = {
    "paper-tables": ("train and evaluate every paper variant; write paper_tables.json/.md",
                     "mmsim.training.experiments.paper_tables.cli"),
    "modality-information": ("the oracle: how much of the future video each modality decides",
                             "mmsim.training.experiments.modality_information"),
    "margin-ceiling": ("the oracle: the most hand pose, EMG and force could add to a checkpoint",
                       "mmsim.training.experiments.margin_ceiling"),
    "condition-pathway": ("which path (warp, y°, hand map) carries a checkpoint's actions",
                          "mmsim.training.experiments.condition_pathway"),
    "samplers": ("few-step samplers measured with an exact denoiser", "mmsim.training.experiments.samplers"),
    "demo-quality": ("the demo checkpoint against copy-last and no-actions on fresh synthetic clips",
                     "mmsim.training.experiments.demo_quality"),
}


def usage() -> str:
    width = max(map(len, EXPERIMENTS))
    return "usage: mmsim experiments NAME [ARGS ...]\n\nexperiments:\n" + "\n".join(
        f"  {name:{width}s}  {help_text}" for name, (help_text, _) in EXPERIMENTS.items())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in EXPERIMENTS:
        print(f"{usage()}\n\nmmsim experiments: error: unknown experiment {name!r}", file=sys.stderr)
        return 2
    return int(importlib.import_module(EXPERIMENTS[name][1]).main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
