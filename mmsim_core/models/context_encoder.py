"""Context-frame encoders: frames → features ``z_x`` of size d (the anchor / context vectors).

Two implementations with one interface, ``encode(frames) -> (B, N, d)`` for frames float
(B, N, 3, H, W) in [-1, 1], and an attribute ``feature_dim``:

- ``SmallContextEncoder``: a small trainable CNN, the offline default (trained with the model,
  fast on CPU, 64×64 input). Saved inside the simulator checkpoint.
- ``OpenCLIPContextEncoder``: the paper's frozen OpenCLIP image tower (ViT-H-14,
  ``laion2b_s32b_b79k``, d = 1024), loaded from a pretrained tag, a Hub id (``hf-hub:org/repo``),
  a local checkpoint file or a local folder (``open_clip_config.json`` + weights). Absent weights
  raise a clear ``MMSimError`` instead of silently running with random weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import Tensor, nn

from mmsim_core.errors import ActionInputError, MMSimError

OPENCLIP_DEFAULT_MODEL = "ViT-H-14"
OPENCLIP_DEFAULT_PRETRAINED = "laion2b_s32b_b79k"
OPENCLIP_DEFAULT_HUB_ID = "hf-hub:laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def _check_frames(frames: Tensor) -> None:
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ActionInputError(f"context frames must have shape (B, N, 3, H, W), got {tuple(frames.shape)}")


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.norm1 = nn.GroupNorm(min(8, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.norm2 = nn.GroupNorm(min(8, cout), cout)
        self.skip = nn.Conv2d(cin, cout, 1, stride) if (cin != cout or stride != 1) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.silu(h + self.skip(x))


class SmallContextEncoder(ModelMixin, ConfigMixin):
    """Small trainable CNN: (B, N, 3, H, W) in [-1, 1] → (B, N, feature_dim).

    A stride-2 stem then one residual block per entry of ``channels`` (each halving the
    resolution): 64 → 32 → 16 → 8 → 4, global average pool, linear head. Group-norm, not
    batch-norm, so that a frame's feature does not depend on the other frames in the batch.
    Inputs of another size are resized to ``image_size`` first.
    """

    @register_to_config
    def __init__(self, feature_dim: int = 256, image_size: int = 64, channels: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        channels = tuple(channels)
        if feature_dim <= 0 or image_size <= 0 or not channels:
            raise ValueError(
                f"SmallContextEncoder: feature_dim and image_size must be positive and channels non-empty, "
                f"got feature_dim={feature_dim}, image_size={image_size}, channels={list(channels)}"
            )
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1), nn.GroupNorm(min(8, channels[0]), channels[0]), nn.SiLU())
        blocks, cin = [], channels[0]
        for i, c in enumerate(channels):
            blocks.append(_ResBlock(cin, c, stride=1 if i == 0 else 2))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, feature_dim)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def encode(self, frames: Tensor) -> Tensor:
        _check_frames(frames)
        B = frames.shape[0]
        x = rearrange(frames, "b n c h w -> (b n) c h w").to(self.dtype)
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        h = self.blocks(self.stem(x))  # ((B N), C, s, s)
        z = self.head(h.mean(dim=(-2, -1)))  # ((B N), d)
        return rearrange(z, "(b n) d -> b n d", b=B)

    def forward(self, frames: Tensor) -> Tensor:
        return self.encode(frames)


# ----------------------------------------------------------------------------------------------
# OpenCLIP
# ----------------------------------------------------------------------------------------------
def _looks_like_path(s: str) -> bool:
    return os.sep in s or s.startswith(".") or s.endswith((".bin", ".pt", ".pth", ".safetensors"))


def load_open_clip(model_name: str, pretrained: str | os.PathLike, what: str = "OpenCLIP"):
    """Create an OpenCLIP model with real weights, or raise ``MMSimError`` saying how to provide them.

    ``pretrained`` may be: a pretrained tag known to open_clip (``laion2b_s32b_b79k``; downloaded
    into the Hugging Face cache, so it works offline once cached), a Hub id ``hf-hub:org/repo``, a
    local checkpoint file (state dict for ``model_name``), or a local folder holding
    ``open_clip_config.json`` and the weights (the Hub layout, e.g. a downloaded snapshot).
    Returns ``(model, preprocess_cfg)``.
    """
    import open_clip

    pretrained = str(pretrained)
    hint = (
        f"{what} weights for {model_name} not found at {pretrained!r}; pass a local path (a checkpoint file, "
        f"or a folder with open_clip_config.json and the weights), a Hub id such as {OPENCLIP_DEFAULT_HUB_ID!r} "
        f"with network access or a filled Hugging Face cache, or use "
        + ("context_encoder='small'" if "image" in what else "text_encoder='bow'")
    )
    kwargs: dict = {}
    if pretrained.startswith("hf-hub:"):
        name = pretrained
    elif Path(pretrained).is_dir():
        if not (Path(pretrained) / "open_clip_config.json").is_file():
            raise MMSimError(f"{hint} (the folder has no open_clip_config.json)")
        name = f"local-dir:{pretrained}"
    elif Path(pretrained).is_file():
        name, kwargs = model_name, {"pretrained": pretrained}
    elif _looks_like_path(pretrained):
        raise MMSimError(hint)
    else:
        name, kwargs = model_name, {"pretrained": pretrained}
    try:
        model = open_clip.create_model(name, require_pretrained=True, **kwargs)
    except MMSimError:
        raise
    except Exception as e:  # open_clip raises RuntimeError/ValueError/FileNotFoundError/HF errors
        raise MMSimError(f"{hint} ({type(e).__name__}: {e})") from e
    preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    return model, preprocess_cfg


class OpenCLIPContextEncoder(nn.Module):
    """Frozen OpenCLIP image tower: (B, N, 3, H, W) in [-1, 1] → (B, N, embed_dim).

    Frames are mapped to [0, 1], resized (bicubic) to the tower's input size and normalised with
    its mean/std, as OpenCLIP's own preprocessing does. The paper uses the un-normalised image
    embedding; ``normalize=True`` L2-normalises it instead.
    """

    def __init__(
        self,
        model_name: str = OPENCLIP_DEFAULT_MODEL,
        pretrained: str | os.PathLike = OPENCLIP_DEFAULT_PRETRAINED,
        normalize: bool = False,
    ):
        super().__init__()
        model, pp = load_open_clip(model_name, pretrained, what="OpenCLIP image")
        self.visual = model.visual.eval().requires_grad_(False)
        self.model_name, self.pretrained, self.normalize = model_name, str(pretrained), normalize
        size = pp.get("size", getattr(self.visual, "image_size", 224))
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.register_buffer("mean", torch.tensor(pp.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pp.get("std", (0.26862954, 0.26130258, 0.27577711))).view(1, 3, 1, 1), persistent=False)
        self.feature_dim = int(getattr(self.visual, "output_dim", model.text_projection.shape[-1] if hasattr(model, "text_projection") else 0))

    def train(self, mode: bool = True):
        # Frozen: the tower stays in eval mode whatever the surrounding model does.
        super().train(mode)
        self.visual.eval()
        return self

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        _check_frames(frames)
        B = frames.shape[0]
        x = rearrange(frames, "b n c h w -> (b n) c h w").float()
        x = ((x + 1) / 2).clamp(0, 1)
        x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False).clamp(0, 1)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        z = self.visual(x.to(next(self.visual.parameters()).dtype)).float()  # ((B N), d)
        if self.normalize:
            z = F.normalize(z, dim=-1)
        return rearrange(z, "(b n) d -> b n d", b=B)

    def forward(self, frames: Tensor) -> Tensor:
        return self.encode(frames)
