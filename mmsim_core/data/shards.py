"""The clip shard format: what ``mmsim preprocess`` writes, what the studio exports, what ``ClipDataset`` reads.

A processed dataset is a folder::

    manifest.json              splits -> shard files and clip counts, clip geometry, modalities
    normalization.json         min/max statistics (schema.NormalizationStats)
    <split>/shard_0000.h5      frames          uint8   (N, h+F, S, S, 3)
                               actions/<name>  float32 (N, h+F, *shape)   normalised; zeros where absent
                               present/<name>  bool    (N,)               modality present in the clip
                               text/<kind>     str     (N,)               verb / phrase / sentence
                               meta            str     (N,)               JSON per clip

Every shard carries the attributes ``format`` (:data:`SHARD_FORMAT`), ``units`` (``"normalized"``),
``modalities`` (JSON list) and, when written for a split, ``split``. Frames and actions are stored one
chunk per clip so that reading one clip decompresses only that clip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mmsim_core import schema

SHARD_FORMAT = "mmsim-clips-v1"
MANIFEST_NAME = "manifest.json"
STATS_NAME = "normalization.json"
SPLITS = ("train", "test")
COMPRESSIONS = (None, "lzf", "gzip")


def write_clip_shard(path: str | Path, clips: Sequence[tuple[np.ndarray, Mapping, Mapping, Mapping]],
                     modalities: Sequence[str], split: str | None = None, compression: str | None = "lzf") -> Path:
    """Write one shard. ``clips``: ``(frames (T, S, S, 3) uint8, actions {name: (T, *shape)}, text {kind: str},
    meta dict)`` each; a modality of ``modalities`` missing from a clip's actions is stored as zeros with
    ``present`` false. Returns ``path``."""
    import h5py

    if not clips:
        raise ValueError("a shard needs at least one clip")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}")
    modalities = schema.check_modality_names(modalities)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.stack([np.asarray(c[0], dtype=np.uint8) for c in clips])  # (N, T, S, S, 3)
    n, steps = frames.shape[:2]
    str_dt = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.attrs["format"] = SHARD_FORMAT
        f.attrs["units"] = "normalized"
        f.attrs["modalities"] = json.dumps(list(modalities))
        if split is not None:
            f.attrs["split"] = split
        f.create_dataset("frames", data=frames, chunks=(1,) + frames.shape[1:], compression=compression)
        for m in modalities:
            shape = schema.MODALITIES[m].shape
            arr = np.zeros((n, steps) + shape, dtype=np.float32)  # (N, T, *shape)
            present = np.zeros(n, dtype=bool)
            for i, c in enumerate(clips):
                if c[1].get(m) is not None:
                    arr[i] = c[1][m]
                    present[i] = True
            f.create_dataset(f"actions/{m}", data=arr, chunks=(1, steps) + shape, compression=compression)
            f.create_dataset(f"present/{m}", data=present)
        for kind in schema.TEXT_KINDS:
            f.create_dataset(f"text/{kind}", data=[str(c[2].get(kind, "")) for c in clips], dtype=str_dt)
        f.create_dataset("meta", data=[json.dumps(c[3]) for c in clips], dtype=str_dt)
    return path


class ClipShardWriter:
    """Collects clips of one split and writes them as numbered shards of ``shard_size`` clips under
    ``root/split/`` (``shard_0000.h5``, ... starting at ``first_shard``, so that several writers of a
    split can work at once on disjoint numbers).

    >>> with ClipShardWriter(out, "train", ("emg",)) as w:
    ...     w.add(frames, {"emg": emg}, {"verb": "peel", ...}, {"subject": "S01", ...})
    >>> w.shards  # [{"file": "train/shard_0000.h5", "num_clips": 1}]
    """

    def __init__(self, root: str | Path, split: str, modalities: Sequence[str], shard_size: int = 512,
                 first_shard: int = 0, compression: str | None = "lzf"):
        if shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
        self.root, self.split = Path(root), split
        self.modalities = schema.check_modality_names(modalities)
        self.shard_size, self.first_shard, self.compression = int(shard_size), int(first_shard), compression
        self.shards: list[dict] = []
        self.counts = {m: 0 for m in self.modalities}
        """Clips written with each modality present."""
        self._pending: list[tuple] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, frames: np.ndarray, actions: Mapping[str, np.ndarray], text: Mapping[str, str],
            meta: Mapping) -> None:
        """One clip: ``frames`` (T, S, S, 3) uint8, the normalised ``actions`` of the modalities it has."""
        self._pending.append((frames, actions, text, meta))
        for m in self.modalities:
            self.counts[m] += actions.get(m) is not None
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        name = f"{self.split}/shard_{self.first_shard + len(self.shards):04d}.h5"
        write_clip_shard(self.root / name, self._pending, self.modalities, self.split, self.compression)
        self.shards.append({"file": name, "num_clips": len(self._pending)})
        self._pending = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.flush()


def write_manifest(root: str | Path, manifest: Mapping) -> dict:
    """``root/manifest.json`` with the format tag set."""
    manifest = {"format": SHARD_FORMAT, **manifest}
    with open(Path(root) / MANIFEST_NAME, "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest
