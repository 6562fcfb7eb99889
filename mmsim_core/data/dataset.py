"""``ClipDataset``: processed clips (``mmsim preprocess`` output, or a studio export; the shard format of
:mod:`mmsim_core.data.shards`) as a map-style dataset.

Item contract::

    {"context": uint8 (h, H, W, 3), "future": uint8 (F, H, W, 3),
     "actions": {name: float32 (h+F, *shape)},     # normalised; only modalities present for the clip
     "text": {"verb": str, "phrase": str, "sentence": str},
     "meta": {"subject", "activity", "source", "start_time_s", "frame_step", "video_frame_indices", ...}}

HDF5 handles are opened lazily and per process (h5py handles must not cross ``fork``), so the dataset
works with ``torch.utils.data.DataLoader(num_workers > 0)``. With modality drop, call
``ds.set_epoch(e)`` before each epoch's iteration; persistent DataLoader workers keep the epoch they
were started with.
"""

from __future__ import annotations

import bisect
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mmsim_core import schema
from mmsim_core.data.shards import MANIFEST_NAME
from mmsim_core.errors import DatasetError


def load_manifest(processed_dir: str | Path) -> dict:
    """Read and check ``processed_dir/manifest.json``; ``DatasetError`` naming what is wrong."""
    path = Path(processed_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"no {MANIFEST_NAME} in {processed_dir} (run `mmsim preprocess RAW OUT` first)")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: cannot read manifest: {e}") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path}: manifest must be a JSON object")
    for key in ("splits", "clip", "modalities", "stats"):
        if key not in manifest:
            raise DatasetError(f"{path}: manifest has no {key!r} entry")
    for split, entry in manifest["splits"].items():
        if not isinstance(entry, dict) or "shards" not in entry or "num_clips" not in entry:
            raise DatasetError(f"{path}: split {split!r} must have 'shards' and 'num_clips'")
        for sh in entry["shards"]:
            if not isinstance(sh, dict) or "file" not in sh or "num_clips" not in sh:
                raise DatasetError(f"{path}: shard entries of split {split!r} need 'file' and 'num_clips', got {sh!r}")
    return manifest


class ClipDataset:
    """Processed clips of one split.

    Args:
        processed_dir: output folder of :func:`mmsim_core.data.preprocess.preprocess`.
        split: ``"train"`` or ``"test"``.
        modality_drop: probability of dropping each present modality from an item (augmentation for
            robustness to missing modalities, paper Table 3). Deterministic in (seed, index, epoch).
        seed: seed of the modality drop.
        modalities: keep only these modalities (default: all in the manifest).
        drop_all: allow the drop to remove every modality of an item (default: one always stays).
        observational_only: keep only clips of observational recordings, leaving out counterfactual ones
            (the synthetic world's re-enactments under edited actions, ``meta["counterfactual"]`` set).
            Indices then run over the kept clips.
    """

    def __init__(self, processed_dir: str | Path, split: str = "train", modality_drop: float = 0.0, seed: int = 0,
                 modalities: Sequence[str] | None = None, drop_all: bool = False, observational_only: bool = False):
        self.root = Path(processed_dir)
        self.manifest = load_manifest(self.root)
        splits = list(self.manifest["splits"])
        if split not in splits:
            raise DatasetError(f"split must be one of {splits}, got {split!r}")
        if not 0.0 <= float(modality_drop) <= 1.0:
            raise ValueError(f"modality_drop must be in [0, 1], got {modality_drop!r}")
        self.split = split
        self.modality_drop = float(modality_drop)
        self.seed = int(seed)
        self.drop_all = bool(drop_all)
        self.epoch = 0
        available = tuple(self.manifest["modalities"])
        if modalities is None:
            self.modalities = available
        else:
            wanted = schema.check_modality_names(modalities)
            self.modalities = tuple(m for m in wanted if m in available)
        clip = self.manifest["clip"]
        self.context_frames, self.future_frames = int(clip["context"]), int(clip["future"])
        self._shards = self.manifest["splits"][split]["shards"]
        for sh in self._shards:
            if not (self.root / sh["file"]).is_file():
                raise DatasetError(f"shard {sh['file']} listed in {self.root / MANIFEST_NAME} is missing")
        self._offsets = np.cumsum([0] + [int(sh["num_clips"]) for sh in self._shards]).tolist()
        self._stats = None
        self._handles: dict[int, object] = {}
        self._pid = None
        self.observational_only = bool(observational_only)
        self._selected: list[int] | None = None  # shard-order indices of the kept clips (None: all)
        if self.observational_only:
            self._selected = self._observational_indices()

    def _observational_indices(self) -> list[int]:
        keep = []
        for s in range(len(self._shards)):
            for row, text in enumerate(self._shard(s)[1]["meta"]):
                try:
                    cf = json.loads(text).get("counterfactual")
                except (ValueError, AttributeError) as e:
                    raise DatasetError(f"malformed shard {self.root / self._shards[s]['file']} at row {row}: "
                                       f"{e}") from None
                if cf is None:  # shards written before counterfactual data have no entry: observational
                    keep.append(self._offsets[s] + row)
        return keep

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return self._offsets[-1] if self._selected is None else len(self._selected)

    @property
    def stats(self) -> schema.NormalizationStats:
        """Min-max statistics fitted on the train split (``normalization.json``)."""
        if self._stats is None:
            path = self.root / self.manifest["stats"]
            if not path.is_file():
                raise DatasetError(f"normalisation statistics {path} listed in the manifest are missing")
            try:
                self._stats = schema.NormalizationStats.load(path)
            except (OSError, ValueError, KeyError) as e:
                raise DatasetError(f"{path}: malformed normalisation statistics: {e}") from None
        return self._stats

    @property
    def clip_frames(self) -> int:
        return self.context_frames + self.future_frames

    def set_epoch(self, epoch: int) -> None:
        """Changes which modalities the drop removes (call before each epoch's DataLoader iteration)."""
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        return (f"ClipDataset({str(self.root)!r}, split={self.split!r}, clips={len(self)}, "
                f"modalities={list(self.modalities)}, modality_drop={self.modality_drop}"
                + (", observational_only=True)" if self.observational_only else ")"))

    # ------------------------------------------------------------------ reading
    def _shard(self, i: int):
        import h5py

        pid = os.getpid()
        if self._pid != pid:  # new process (DataLoader worker): inherited handles are not usable
            self._handles = {}
            self._pid = pid
        h = self._handles.get(i)
        if h is None:
            path = self.root / self._shards[i]["file"]
            try:
                f = h5py.File(path, "r")
                n = f["frames"].shape[0]
            except Exception as e:
                raise DatasetError(f"cannot read shard {path}: {e}") from None
            if n != int(self._shards[i]["num_clips"]):
                raise DatasetError(f"shard {path} holds {n} clips but the manifest says {self._shards[i]['num_clips']}")
            try:
                # Small per-clip fields are read once per shard: per-row reads of vlen strings are slow.
                small = {
                    "present": {m: f[f"present/{m}"][()].astype(bool) for m in self.modalities if f"present/{m}" in f},
                    "text": {k: f[f"text/{k}"].asstr()[()] for k in schema.TEXT_KINDS},
                    "meta": f["meta"].asstr()[()],
                }
            except (KeyError, OSError, ValueError) as e:
                raise DatasetError(f"malformed shard {path}: {e}") from None
            h = (f, small)
            self._handles[i] = h
        return h

    def locate(self, index: int) -> tuple[int, int]:
        """``index`` -> (shard number, row in shard)."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"clip index {index} out of range for {n} clips in split {self.split!r}")
        if self._selected is not None:
            index = self._selected[index]
        s = bisect.bisect_right(self._offsets, index) - 1
        return s, index - self._offsets[s]

    def _dropped(self, index: int, present: list[str]) -> set[str]:
        if self.modality_drop <= 0 or not present:
            return set()
        rng = np.random.default_rng([self.seed, self.epoch, index])
        drop = rng.random(len(present)) < self.modality_drop
        if drop.all() and not self.drop_all:
            drop[rng.integers(len(present))] = False
        return {m for m, d in zip(present, drop) if d}

    def clip_meta(self, index: int) -> dict:
        """Clip ``index``'s meta (subject, activity, source, frame indices, ...) without reading its frames."""
        s, row = self.locate(int(index))
        try:
            meta = json.loads(self._shard(s)[1]["meta"][row])
        except (KeyError, ValueError) as e:
            raise DatasetError(f"malformed shard {self.root / self._shards[s]['file']} at row {row}: {e}") from None
        source = meta.get("source")
        if isinstance(source, str) and source and not Path(source).is_absolute():
            # bundled with the dataset (``preprocess(bundle_sidecars=...)``): relative to its folder
            meta["source"] = str(self.root / source)
        return {**meta, "index": int(index) % len(self), "split": self.split}

    def __getitem__(self, index: int) -> dict:
        s, row = self.locate(int(index))
        f, small = self._shard(s)
        try:
            frames = f["frames"][row]  # (h+F, H, W, 3)
            present = [m for m in self.modalities if m in small["present"] and small["present"][m][row]]
            dropped = self._dropped(int(index), present)
            actions = {m: np.asarray(f[f"actions/{m}"][row], dtype=np.float32) for m in present if m not in dropped}
            text = {k: str(small["text"][k][row]) for k in schema.TEXT_KINDS}
        except (KeyError, OSError, ValueError) as e:
            raise DatasetError(f"malformed shard {self.root / self._shards[s]['file']} at row {row}: {e}") from None
        meta = self.clip_meta(index)
        if dropped:
            meta["dropped_modalities"] = sorted(dropped)
        h = self.context_frames
        return {"context": frames[:h], "future": frames[h:], "actions": actions, "text": text, "meta": meta}

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        for f, _ in self._handles.values():
            try:
                f.close()
            except Exception:
                pass
        self._handles = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_pid"] = None
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def collate_clips(items: list[dict]) -> dict:
    """Batch items of :class:`ClipDataset` into torch tensors.

    Returns ``{"context": uint8 (B,h,H,W,3), "future": uint8 (B,F,H,W,3), "actions": {name: float32
    (B,h+F,*shape)} for every modality present in at least one item (zeros where absent),
    "action_mask": {name: bool (B,)}, "text": {kind: list[str]}, "meta": list[dict]}``.
    """
    import torch

    if not items:
        raise ValueError("collate_clips needs at least one item")
    names = [m for m in schema.MODALITIES if any(m in it["actions"] for it in items)]
    T = items[0]["context"].shape[0] + items[0]["future"].shape[0]
    actions, mask = {}, {}
    for m in names:
        arr = np.zeros((len(items), T) + schema.MODALITIES[m].shape, dtype=np.float32)  # (B, h+F, *shape)
        mk = np.zeros(len(items), dtype=bool)
        for i, it in enumerate(items):
            if m in it["actions"]:
                arr[i] = it["actions"][m]
                mk[i] = True
        actions[m] = torch.from_numpy(arr)
        mask[m] = torch.from_numpy(mk)
    return {
        "context": torch.from_numpy(np.stack([it["context"] for it in items])),
        "future": torch.from_numpy(np.stack([it["future"] for it in items])),
        "actions": actions,
        "action_mask": mask,
        "text": {k: [it["text"][k] for it in items] for k in schema.TEXT_KINDS},
        "meta": [it["meta"] for it in items],
    }
