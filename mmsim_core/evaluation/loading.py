"""Finding and loading a trained simulator for inference (evaluation, generation, the studio)."""

from __future__ import annotations

from pathlib import Path

import torch

from mmsim_core.errors import MMSimError


def resolve_checkpoint(path_or_id: str) -> str:
    """A pipeline folder; also accepts a training run (``final/``) or a checkpoint (``pipeline/``) folder.
    Anything that is not a local path is passed on as a Hub id."""
    p = Path(path_or_id).expanduser()
    looks_local = p.exists() or str(path_or_id).startswith((".", "/", "~")) or path_or_id.count("/") != 1
    if not looks_local:
        return str(path_or_id)
    if not p.exists():
        raise MMSimError(f"checkpoint folder {p} does not exist")
    if not p.is_dir():
        raise MMSimError(f"checkpoint {p} is not a folder (expected a save_pretrained pipeline folder)")
    for candidate in (p, p / "pipeline", p / "final"):
        if (candidate / "model_index.json").is_file():
            return str(candidate)
    raise MMSimError(f"{p} holds no pipeline (no model_index.json in it, nor in its pipeline/ or final/ folder)")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_pipeline(checkpoint: str, device: str | torch.device = "auto"):
    """``(MultisensoryVideoPipeline on device, resolved path)``; progress bar off. Local folder or Hub id."""
    from mmsim_core import MultisensoryVideoPipeline

    path = resolve_checkpoint(checkpoint)
    try:
        pipe = MultisensoryVideoPipeline.from_pretrained(path)
    except MMSimError:
        raise
    except Exception as e:  # noqa: BLE001 - Hub/network/format errors become one clear line
        where = "Hub id" if not Path(path).exists() else "pipeline folder"
        raise MMSimError(f"cannot load {where} {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    dev = resolve_device(device)
    pipe.to(dev)
    if dev.type == "cpu" and pipe.denoiser.dtype != torch.float32:
        pipe.to(dtype=torch.float32)  # fp16 checkpoints (the demo's) are stored small; CPU half math is slow
    pipe.set_progress_bar_config(disable=True)
    return pipe, path


__all__ = ["resolve_checkpoint", "resolve_device", "load_pipeline"]
