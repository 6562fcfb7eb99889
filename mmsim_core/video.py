"""Video I/O and the one frame transform every part of the project shares.

Writing uses imageio-ffmpeg (H.264, the ffmpeg binary ships inside the wheel); reading uses OpenCV,
which decodes frame by frame without holding the whole file in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from mmsim_core.errors import RecordingError


def center_crop_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Square centre crop, then area-resize to ``size``. ``(..., H, W, 3) uint8`` -> ``(..., size, size, 3)``.

    This is the paper's frame preprocessing (16:9 world video -> 64x64); the synthetic world's
    oracle uses the same function so its renders compare pixel for pixel with processed clips.
    """
    frames = np.asarray(frames)
    h, w = frames.shape[-3:-1]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = frames[..., top:top + side, left:left + side, :]
    lead = crop.shape[:-3]
    flat = crop.reshape((-1, side, side, crop.shape[-1]))
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=interp) for f in flat]) \
        if len(flat) else np.zeros((0, size, size, crop.shape[-1]), dtype=frames.dtype)
    return out.reshape(lead + (size, size, crop.shape[-1]))


def video_info(path: str | Path) -> dict:
    """Frame count, fps and size of a video; raises ``RecordingError`` if it cannot be opened."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise RecordingError(path, "video cannot be opened (missing, unreadable or not a video)")
        return {
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "fps": float(cap.get(cv2.CAP_PROP_FPS)),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        }
    finally:
        cap.release()


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames ``(H, W, 3)`` in order."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RecordingError(path, "video cannot be opened (missing, unreadable or not a video)")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def read_video(path: str | Path, size: int | None = None) -> np.ndarray:
    """Decode a whole video to ``(N, H, W, 3)`` uint8, optionally centre-cropped and resized to ``size``
    frame by frame (so a long 16:9 video never sits in memory at full resolution)."""
    frames = [center_crop_resize(f, size) if size else f for f in iter_video_frames(path)]
    if not frames:
        raise RecordingError(path, "video has no decodable frames")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 30.0, quality: int = 8) -> Path:
    """Write ``(N, H, W, 3)`` uint8 RGB frames as H.264 mp4 (yuv420p, playable in browsers)."""
    import imageio.v2 as imageio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # yuv420p needs even sizes; macro_block_size=1 keeps small sizes (e.g. 64x64) as they are.
    with imageio.get_writer(str(path), fps=fps, codec="libx264", quality=quality, pixelformat="yuv420p",
                            macro_block_size=1, ffmpeg_log_level="error") as writer:
        for f in frames:
            writer.append_data(f)
    return path


class VideoWriter:
    """Streaming H.264 writer for long videos (the synthetic world writes minutes at 30 fps)."""

    def __init__(self, path: str | Path, fps: float = 30.0, quality: int = 8):
        import imageio.v2 as imageio

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._w = imageio.get_writer(str(self.path), fps=fps, codec="libx264", quality=quality,
                                     pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error")

    def append(self, frame: np.ndarray) -> None:
        self._w.append_data(np.ascontiguousarray(frame, dtype=np.uint8))

    def close(self) -> None:
        self._w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
