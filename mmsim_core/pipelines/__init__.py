"""diffusers pipelines of mmsim."""

from mmsim_core.pipelines.multisensory import MultisensoryPipelineOutput, MultisensoryVideoPipeline

__all__ = ["MultisensoryVideoPipeline", "MultisensoryPipelineOutput"]
