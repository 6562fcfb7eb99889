"""Checks on weight files before anything loads them: only safetensors, and only whole ones.

A pickle (``.bin``, ``.pt``, ``.ckpt``, ``.pkl``) can run arbitrary code when unpickled, so weights are
read from safetensors only. A truncated or corrupt safetensors file is reported by its path before a
library deep in the loading stack reports it in its own words.
"""

from __future__ import annotations

from pathlib import Path

from mmsim_core.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_safetensors(path: str | Path) -> None:
    """Raise :class:`CheckpointError` naming ``path`` unless it is a complete, readable safetensors file.

    safetensors checks that the header parses and that the tensors it lists cover the file exactly, so a
    truncated or padded file, or one whose header was overwritten, fails here. (A flipped byte inside a
    tensor's data is not detectable: the format carries no checksum.)"""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weight file missing") from None
    except Exception as e:  # SafetensorError, OSError
        raise CheckpointError(f"{path}: not a complete safetensors file, truncated or corrupt ({e})") from None


def check_weights_folder(folder: str | Path) -> list[Path]:
    """Check every weight file directly in ``folder``; return its safetensors files.

    A pickle weight file is refused unless a safetensors file sits beside it (then it is ignored)."""
    folder = Path(folder)
    safe = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles and not safe:
        raise CheckpointError(f"{pickles[0]}: a pickle weight file; only safetensors are loaded (pickles can run "
                              f"code when loaded). Re-save the model with save_pretrained (safe_serialization=True)")
    for p in safe:
        check_safetensors(p)
    return safe
