"""Evaluation pieces shared by the training scripts and the studio.

* :mod:`~mmsim_core.evaluation.metrics` — MSE / PSNR / SSIM (torchmetrics), LPIPS, FVD and the
  :class:`VideoMetrics` accumulator.
* :mod:`~mmsim_core.evaluation.video` — [ground truth | prediction | |difference|] panels, mp4 frames
  and filmstrips.
* :mod:`~mmsim_core.evaluation.loading` — resolving and loading a checkpoint for inference.

Submodules are imported on first use, so composing a filmstrip does not import torchmetrics.
"""

import importlib

_LAZY = {
    **{name: "metrics" for name in ("PSNR_MAX", "FRAME_METRICS", "LOWER_IS_BETTER", "MetricUnavailable", "VideoMetrics",
                                    "to_unit", "frame_mse", "frame_psnr", "frame_ssim", "frame_scores", "load_lpips",
                                    "load_i3d", "frechet_distance", "fvd_from_features")},
    **{name: "video" for name in ("upscale", "difference_image", "compose_video", "compose_filmstrip")},
    **{name: "loading" for name in ("resolve_checkpoint", "resolve_device", "load_pipeline")},
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
