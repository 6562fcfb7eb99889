"""``mmsim space OUT``: write a Hugging Face Space folder that runs the studio on its own.

    mmsim space /tmp/mmsim-space                 # demo checkpoint + demo clips
    mmsim space OUT --checkpoint runs/x/final    # another pipeline folder
    cd OUT && git init -b main && git lfs install --local && git add . && git commit -m studio \\
        && git remote add origin https://huggingface.co/spaces/USER/NAME && git push -u origin main

The folder holds ``app.py``, the ``mmsim_core`` library, the studio (``app/``), the checkpoint and the clips,
a ``requirements.txt`` with the CPU build of torch, a ``README.md`` with the Space's front matter, and a
``.gitattributes`` that stores every binary file (weights, clip shards, the world's oracles) through Git LFS.
Binary files or files over the Space's 10 MB plain-file limit that no LFS pattern covers are refused.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAIN_FILE_LIMIT_MB = 10.0  # Hugging Face refuses plain (non-LFS) files above this size
# The Hub refuses binary files pushed as plain git blobs, whatever their size: every binary kind the folder
# can hold (weights, clip shards, the world's oracle sidecars, media) goes through LFS.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.h5", "*.hdf5", "*.npz", "*.npy", "*.mp4", "*.png", "*.jpg",
                "*.jpeg", "*.gif", "*.webp", "*.rrd", "*.zip")
# What the studio imports at run time (the training extras, lpips and open_clip are not needed).
REQUIREMENTS = """--extra-index-url https://download.pytorch.org/whl/cpu
torch
numpy>=1.24
einops>=0.7
diffusers>=0.30
accelerate>=0.30
safetensors>=0.4
huggingface_hub>=0.23
h5py>=3.9
opencv-python-headless>=4.8
imageio>=2.31
imageio-ffmpeg>=0.5
tqdm>=4.66
gradio>=5.0
plotly>=5.20
torchmetrics>=1.3
tabulate>=0.9
rerun-sdk>=0.20
"""
README = """---
title: mmsim studio
emoji: 🖐️
colorFrom: blue
colorTo: indigo
sdk: gradio
app_file: app.py
pinned: false
license: apache-2.0
---

# mmsim studio

Edit the hand pose, body pose, EMG and hand force of an egocentric clip and watch a multisensory video
simulator (Li & Torralba, ICCV 2025, at CPU scale) render the future. The bundled clips come from a
synthetic world. Runs on the free CPU hardware.
"""
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def is_binary(path: Path) -> bool:
    """Git's own test: a NUL byte in the first 8,000 bytes."""
    with open(path, "rb") as f:
        return b"\0" in f.read(8000)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmsim space", description="Write a Hugging Face Space folder for the studio.")
    p.add_argument("out", type=Path, help="folder to write (must not exist or be empty)")
    p.add_argument("--checkpoint", type=Path, default=REPO / "examples" / "demo_checkpoint",
                   help="pipeline folder to ship (default: examples/demo_checkpoint)")
    p.add_argument("--data", type=Path, default=REPO / "examples" / "demo_data",
                   help="processed clip folder for the gallery (default: examples/demo_data)")
    p.add_argument("--proposer", type=Path, default=None,
                   help="action proposer folder for 'Propose actions' (default: examples/demo_proposer when present)")
    p.add_argument("--scorer", type=Path, default=None,
                   help="learned goal scorer ranking the proposals (default: examples/demo_scorer when present)")
    return p


def write_space(out: Path, checkpoint: Path, data: Path, proposer: Path | None = None,
                scorer: Path | None = None) -> dict:
    """Write the folder; returns ``{"files": n, "mb": total, "lfs": [paths stored through LFS]}``."""
    from mmsim_core.errors import MMSimError

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MMSimError(f"{out} is not empty: give a new folder")
    for what, path in (("--checkpoint", checkpoint), ("--data", data), ("--proposer", proposer), ("--scorer", scorer)):
        if path is not None and not Path(path).is_dir():
            raise MMSimError(f"{what} {path}: no such folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "app.py", out / "app.py")
    shutil.copytree(REPO / "mmsim_core", out / "mmsim_core", ignore=_IGNORE)
    shutil.copytree(REPO / "app", out / "app", ignore=_IGNORE)
    shutil.copytree(checkpoint, out / "examples" / "demo_checkpoint", ignore=_IGNORE)
    shutil.copytree(data, out / "examples" / "demo_data", ignore=_IGNORE)
    if proposer is not None:  # where the studio looks for one by default
        shutil.copytree(proposer, out / "examples" / "demo_proposer", ignore=_IGNORE)
    if scorer is not None:
        shutil.copytree(scorer, out / "examples" / "demo_scorer", ignore=_IGNORE)
    (out / "requirements.txt").write_text(REQUIREMENTS)
    (out / "README.md").write_text(README)
    (out / ".gitattributes").write_text("".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS))
    files = [f for f in out.rglob("*") if f.is_file()]
    lfs = [f for f in files if any(f.match(p) for p in LFS_PATTERNS)]
    too_big = [f for f in files if f not in lfs and f.stat().st_size > PLAIN_FILE_LIMIT_MB * 2**20]
    if too_big:
        raise MMSimError(f"files over {PLAIN_FILE_LIMIT_MB:.0f} MB not stored through LFS: "
                         f"{[str(f.relative_to(out)) for f in too_big]}")
    binary = [f for f in files if f not in lfs and is_binary(f)]
    if binary:
        raise MMSimError(f"binary files the Hub would refuse as plain git files (no LFS pattern covers them): "
                         f"{[str(f.relative_to(out)) for f in binary]}")
    return {"files": len(files), "mb": sum(f.stat().st_size for f in files) / 2**20,
            "lfs": [str(f.relative_to(out)) for f in lfs]}


def main(argv: list[str] | None = None) -> int:
    from mmsim_core.errors import MMSimError

    args = build_parser().parse_args(argv)
    try:
        chosen = {}
        for name, given in (("proposer", args.proposer), ("scorer", args.scorer)):
            default = REPO / "examples" / f"demo_{name}"
            chosen[name] = given if given is not None else (default if default.is_dir() else None)
        info = write_space(args.out, args.checkpoint, args.data, chosen["proposer"], chosen["scorer"])
    except MMSimError as e:
        print(f"mmsim space: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {info['files']} files, {info['mb']:.1f} MB ({len(info['lfs'])} through Git LFS). "
          f"Try it: cd {args.out} && python app.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
