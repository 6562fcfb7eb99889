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

import copy
import json
import os
import warnings
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

    A stride-2 stem, then ``depth`` residual blocks of ``width · 2^i`` channels, each after the
    first halving the resolution (64 → 32 → 32 → 16 → 8 → 4 by default), global average pool,
    linear head. Group-norm, not
    batch-norm, so that a frame's feature does not depend on the other frames in the batch.
    Inputs of another size are resized to ``image_size`` first.
    """

    @register_to_config
    def __init__(self, feature_dim: int = 256, image_size: int = 64, width: int = 32, depth: int = 4):
        super().__init__()
        if min(feature_dim, image_size, width, depth) <= 0:
            raise ValueError(
                "SmallContextEncoder: feature_dim, image_size, width and depth must be positive, got "
                f"feature_dim={feature_dim}, image_size={image_size}, width={width}, depth={depth}"
            )
        channels = [width * 2**i for i in range(depth)]  # 32, 64, 128, 256 by default
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.GroupNorm(min(8, width), width), nn.SiLU())
        blocks, cin = [], width
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
OPENCLIP_WEIGHTS = ("pretrained", "checkpoint", "random")
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _looks_like_path(s: str) -> bool:
    return os.sep in s or s.startswith((".", "~")) or s.endswith((".bin", ".pt", ".pth", ".safetensors"))


def load_open_clip(model_name: str, pretrained: str | os.PathLike, what: str = "OpenCLIP image",
                   text_tower: bool = False):
    """Create an OpenCLIP model with real weights (``open_clip.create_model``), or raise ``MMSimError``
    saying how to provide them.

    ``pretrained`` may be: a pretrained tag known to open_clip (``laion2b_s32b_b79k``; fetched into
    the Hugging Face cache, so it works offline once cached), a Hub id ``hf-hub:org/repo``, a local
    checkpoint file (a state dict for ``model_name``), or a local folder holding
    ``open_clip_config.json`` and the weights (the Hub layout, e.g. a downloaded snapshot).
    ``text_tower``: build the text tower as one module, ``model.text`` (open_clip's custom-text layout;
    it converts the weights of a plain CLIP checkpoint).
    Returns ``(model, model_cfg, preprocess_cfg)``; ``model_cfg`` rebuilds the architecture.
    """
    import open_clip

    pretrained = os.path.expanduser(str(pretrained))
    fallback = "context_encoder='small'" if "image" in what else "text_encoder='bow'"
    hint = (
        f"{what} weights for {model_name} not found at {pretrained!r}; pass a local path (a checkpoint file, "
        f"or a folder with open_clip_config.json and the weights), a Hub id such as {OPENCLIP_DEFAULT_HUB_ID!r} "
        f"(needs network access or a filled Hugging Face cache), or use {fallback}"
    )
    kwargs: dict = {}
    if pretrained.startswith("hf-hub:"):
        name = pretrained
    elif Path(pretrained).is_dir():
        if not (Path(pretrained) / "open_clip_config.json").is_file():
            raise MMSimError(f"{hint} (the folder has no open_clip_config.json)")
        name = f"local-dir:{pretrained}"
    elif Path(pretrained).is_file() or not _looks_like_path(pretrained):
        name, kwargs = model_name, {"pretrained": pretrained}
    else:
        raise MMSimError(hint)
    try:
        model = open_clip.create_model(name, require_pretrained=True, force_custom_text=text_tower, **kwargs)
        model_cfg = open_clip.get_model_config(name)
    except Exception as e:  # open_clip raises RuntimeError/ValueError/FileNotFoundError/Hub errors
        raise MMSimError(f"{hint} ({type(e).__name__}: {e})") from e
    if model_cfg is None:
        raise MMSimError(f"{what}: no OpenCLIP model config for {name!r}")
    preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    return model, copy.deepcopy(model_cfg), preprocess_cfg


def _model_cfg_for(model_name: str) -> dict:
    import open_clip

    if model_name not in open_clip.list_models():
        raise MMSimError(f"unknown OpenCLIP model {model_name!r}; known: {open_clip.list_models()[:8]}...")
    return copy.deepcopy(open_clip.get_model_config(model_name))


def build_open_clip(model_name: str, model_cfg: dict | None = None, text_tower: bool = False):
    """An OpenCLIP model with random weights: of ``model_name``'s registered architecture
    (``open_clip.create_model(model_name, pretrained=None)``), or of ``model_cfg``, the architecture a
    saved checkpoint recorded (which need not be registered under any name; open_clip's model classes
    take it as is). The caller keeps one tower and loads its weights."""
    import open_clip

    if model_cfg is None:
        if model_name not in open_clip.list_models():
            raise MMSimError(f"unknown OpenCLIP model {model_name!r}; known: {open_clip.list_models()[:8]}...")
        return open_clip.create_model(model_name, pretrained=None, force_custom_text=text_tower)
    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or text_tower
    return (open_clip.CustomTextCLIP if custom_text else open_clip.CLIP)(**cfg)


def _jsonable(d: dict | None) -> dict | None:
    """Config dicts go into config.json: tuples → lists, recursively."""
    if d is None:
        return None
    return json.loads(json.dumps(d))


class OpenCLIPContextEncoder(ModelMixin, ConfigMixin):
    """Frozen OpenCLIP image tower: (B, N, 3, H, W) in [-1, 1] → (B, N, embed_dim) (1024 for ViT-H-14).

    Frames are mapped to [0, 1], resized (bicubic) to the tower's input size and normalised with
    its mean/std, as OpenCLIP's own preprocessing does. The paper uses the image embedding as is;
    ``normalize=True`` L2-normalises it.

    ``weights``:
    - ``"pretrained"`` (default): load real weights from ``pretrained`` (tag, ``hf-hub:`` id, local
      file or folder); absent weights raise ``MMSimError``. After loading, the config switches to
      ``"checkpoint"`` and records the architecture (``model_cfg``), so a ``save_pretrained`` folder
      is self-contained: reloading rebuilds the tower and takes the weights from the folder.
    - ``"checkpoint"``: build the architecture from ``model_cfg`` only (weights come from the
      ``from_pretrained`` folder). Not meant to be called by hand.
    - ``"random"``: random weights, with a loud warning — for speed benchmarks and tests only;
      never report metrics of such a model as the paper's.
    """

    @register_to_config
    def __init__(
        self,
        model_name: str = OPENCLIP_DEFAULT_MODEL,
        pretrained: str = OPENCLIP_DEFAULT_PRETRAINED,
        normalize: bool = False,
        weights: str = "pretrained",
        model_cfg: dict | None = None,
        preprocess_cfg: dict | None = None,
    ):
        super().__init__()
        if weights not in OPENCLIP_WEIGHTS:
            raise ValueError(f"weights must be one of {list(OPENCLIP_WEIGHTS)}, got {weights!r}")
        if weights == "pretrained":
            model, model_cfg, preprocess_cfg = load_open_clip(model_name, pretrained, what="OpenCLIP image")
            visual = model.visual
            self.register_to_config(weights="checkpoint", model_cfg=_jsonable(model_cfg), preprocess_cfg=_jsonable(preprocess_cfg))
        else:
            if model_cfg is None:
                if weights == "checkpoint":
                    raise ValueError("weights='checkpoint' needs model_cfg (it is written by save_pretrained)")
                visual = build_open_clip(model_name).visual
                model_cfg = _model_cfg_for(model_name)
                self.register_to_config(model_cfg=_jsonable(model_cfg))
            else:
                visual = build_open_clip(model_name, model_cfg).visual
            if weights == "random":
                warnings.warn(
                    f"OpenCLIPContextEncoder: {model_name} built with RANDOM weights; its features are meaningless "
                    "(use for speed benchmarks and tests only).",
                    stacklevel=2,
                )
        pp = dict(preprocess_cfg or {})
        self.visual = visual.eval().requires_grad_(False)
        self.model_name, self.pretrained, self.normalize = model_name, str(pretrained), normalize
        size = pp.get("size", getattr(self.visual, "image_size", 224))
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.register_buffer("mean", torch.tensor(pp.get("mean", _CLIP_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pp.get("std", _CLIP_STD)).view(1, 3, 1, 1), persistent=False)
        self.feature_dim = int(model_cfg["embed_dim"])

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
