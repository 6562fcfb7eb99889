"""mmsim_core: the library behind mmsim (multisensory action-conditioned video generation).

Heavy pieces (torch models, diffusers pipeline) are imported lazily so that data tools stay light.
"""

from mmsim_core.schema import (  # noqa: F401
    CLIP_FRAMES,
    CONTEXT_FRAMES,
    FRAME_SIZE,
    FUTURE_FRAMES,
    MODALITIES,
    MODALITY_NAMES,
    ModalitySpec,
    NormalizationStats,
)

__version__ = "0.1.0"

_LAZY = {
    "MultisensoryVideoPipeline": "mmsim_core.pipelines",
    "MultisensoryPipelineOutput": "mmsim_core.pipelines",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmsim_core' has no attribute {name!r}")
