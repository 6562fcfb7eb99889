"""Data: ActionSense reader, preprocessing into clip shards, the shard writer, and the clip dataset."""

from mmsim_core.data.actionsense import Activity, ActionSenseRecording, align_modalities  # noqa: F401
from mmsim_core.data.dataset import ClipDataset, collate_clips, load_manifest  # noqa: F401
from mmsim_core.data.shards import ClipShardWriter, write_clip_shard, write_manifest  # noqa: F401
from mmsim_core.data.preprocess import PreprocessConfig, preprocess  # noqa: F401
from mmsim_core.data.text import describe, verb_phrase  # noqa: F401

__all__ = [
    "ActionSenseRecording", "Activity", "align_modalities",
    "ClipDataset", "collate_clips", "load_manifest",
    "ClipShardWriter", "write_clip_shard", "write_manifest",
    "PreprocessConfig", "preprocess",
    "describe", "verb_phrase",
]
