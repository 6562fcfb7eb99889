"""Models: the multisensory action encoder, context/text encoders (and the video denoiser)."""

from mmsim_core.models.action_encoder import (  # noqa: F401
    ActionEncoderConfig,
    ActionEncoderOutput,
    MultisensoryActionEncoder,
)
from mmsim_core.models.context_encoder import OpenCLIPContextEncoder, SmallContextEncoder  # noqa: F401
from mmsim_core.models.text_encoder import BagOfWordsTextEncoder, OpenCLIPTextEncoder  # noqa: F401
from mmsim_core.models.denoiser import DenoiserConfig, VideoDenoiser, VideoDenoiserOutput  # noqa: F401
