"""Side-by-side pictures of a prediction: [ground truth | prediction | |difference|].

``mmsim generate`` writes them as an mp4 and a PNG filmstrip; the studio shows the same panels. Reading
and writing video files lives in :mod:`mmsim_core.video`; this module only composes frames.
"""

from __future__ import annotations

import cv2
import numpy as np

PANEL_TITLES = ("ground truth", "prediction", "|difference|")
CONTEXT_COLOR = (150, 150, 150)
PREDICTED_COLOR = (255, 140, 0)
BACKGROUND = 24
BORDER = 2


def upscale(img: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor: (..., H, W, 3) -> (..., k H, k W, 3)."""
    return np.repeat(np.repeat(img, k, axis=-3), k, axis=-2) if k > 1 else img


def difference_image(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pixel mean absolute RGB difference, colour-mapped (inferno): (..., H, W, 3) uint8."""
    diff = np.abs(pred.astype(np.int16) - target.astype(np.int16)).mean(axis=-1).astype(np.uint8)  # (..., H, W)
    flat = diff.reshape(-1, diff.shape[-1])
    colored = cv2.applyColorMap(flat, cv2.COLORMAP_INFERNO)[..., ::-1]  # BGR -> RGB
    return np.ascontiguousarray(colored.reshape(diff.shape + (3,)))


def _framed(img: np.ndarray, color) -> np.ndarray:
    out = np.empty((img.shape[0] + 2 * BORDER, img.shape[1] + 2 * BORDER, 3), np.uint8)
    out[:] = color
    out[BORDER:-BORDER, BORDER:-BORDER] = img
    return out


def _text(img: np.ndarray, text: str, org, scale: float = 0.45) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)


def compose_video(context: np.ndarray, future: np.ndarray, pred: np.ndarray, scale: int = 4) -> np.ndarray:
    """context (h, H, W, 3), future and pred (F, H, W, 3) uint8 -> video frames (h+F, H', W', 3) uint8.

    Context steps show the given context in the prediction panel (framed grey), predicted steps are
    framed orange."""
    h = len(context)
    truth = np.concatenate([context, future])  # (T, H, W, 3)
    shown = np.concatenate([context, pred])
    diff = difference_image(shown, truth)
    frames = []
    header = 36
    for t in range(len(truth)):
        color = CONTEXT_COLOR if t < h else PREDICTED_COLOR
        panels = [_framed(upscale(x[t], scale), color) for x in (truth, shown, diff)]
        ph, pw = panels[0].shape[:2]
        gap = 8
        canvas = np.full((header + ph + gap, 3 * pw + 4 * gap, 3), BACKGROUND, np.uint8)
        for i, (panel, title) in enumerate(zip(panels, PANEL_TITLES)):
            x0 = gap + i * (pw + gap)
            canvas[header:header + ph, x0:x0 + pw] = panel
            _text(canvas, title, (x0, header - 8))
        step = f"context {t + 1}/{h}" if t < h else f"predicted {t - h + 1}/{len(truth) - h}"
        _text(canvas, step, (gap, 14), 0.4)
        frames.append(canvas)
    return np.stack(frames)


def compose_filmstrip(context: np.ndarray, future: np.ndarray, pred: np.ndarray, scale: int = 2) -> np.ndarray:
    """Rows ground truth / prediction / difference, columns the h+F time steps: (H', W', 3) uint8."""
    h = len(context)
    truth = np.concatenate([context, future])
    shown = np.concatenate([context, pred])
    rows = (truth, shown, difference_image(shown, truth))
    label_w, gap = 110, 4
    tile = _framed(upscale(truth[0], scale), CONTEXT_COLOR).shape[0]
    width = label_w + len(truth) * (tile + gap)
    canvas = np.full((gap + len(rows) * (tile + gap), width, 3), BACKGROUND, np.uint8)
    for r, (row, title) in enumerate(zip(rows, PANEL_TITLES)):
        y0 = gap + r * (tile + gap)
        _text(canvas, title, (6, y0 + tile // 2 + 5), 0.4)
        for t in range(len(truth)):
            x0 = label_w + t * (tile + gap)
            color = CONTEXT_COLOR if t < h else PREDICTED_COLOR
            canvas[y0:y0 + tile, x0:x0 + tile] = _framed(upscale(row[t], scale), color)
    return canvas


__all__ = ["PANEL_TITLES", "upscale", "difference_image", "compose_video", "compose_filmstrip"]
