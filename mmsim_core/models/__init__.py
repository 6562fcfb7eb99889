"""Models: the multisensory action encoder, context/text encoders (and the video denoiser)."""

from mmsim_core.models.action_encoder import (  # noqa: F401
    ActionEncoderConfig,
    ActionEncoderOutput,
    MultisensoryActionEncoder,
)
from mmsim_core.models.context_encoder import OpenCLIPContextEncoder, SmallContextEncoder  # noqa: F401
