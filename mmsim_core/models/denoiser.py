"""The video denoiser ``g`` of the simulator (paper §2.3, §7.4): a small factorised space-time UNet.

The paper modifies I2VGen (a 3D UNet in pixel space, 252 M parameters at 64x64): the ``h`` context
frames are concatenated with EVERY noisy future frame on the channel axis, and the text cross-attention
is replaced by cross-attention to the per-frame action feature ``y°_t`` (temporal conditioning: frame
``k`` attends to its own step's feature, not one vector repeated over frames).

This module keeps that method and changes the backbone for CPU speed (spatial attention
above 16x16 dominates the cost of a diffusers ``UNet3DConditionModel``):

* **space-to-depth** by ``patch_size`` (pixel-unshuffle): 64x64x15 -> 16x16x240 with ``patch_size=4``,
  so every convolution and attention runs at 16x16 and 8x8; pixel-shuffle back at the end.
  ``patch_size=1`` with wide channels gives the paper-like pixel-space backbone (``mmsim-paper``).
* **factorised attention**: per-frame spatial self-attention, then per-frame cross-attention to the
  frame's conditioning tokens, then temporal self-attention across the ``F`` frames at each spatial
  position (AnimateDiff-style, its output projection zero-initialised so an untrained temporal layer
  starts as the identity).
* **per-frame conditioning in two places**: cross-attention keys = tokens of ``y°_{h+k}`` (and, with
  ``use_action_history``, of the ``h`` history steps ``y°_0..y°_{h-1}``, paper Table 11 ``h(x,a)``),
  and a FiLM (scale/shift) in every ResBlock from ``emb_k = emb(timestep) + pos_k + W y°_{h+k}``.
  A single key makes softmax attention degenerate (every query gets the same value), so each step's
  ``y°_t`` is projected to ``cond_tokens`` tokens.

Shapes: ``sample`` (B, F, C, H, W), ``context`` (B, h, C, H, W), ``encoder_hidden_states`` y° (B, h+F, d),
``timestep`` (B,) or scalar. Output: (B, F, C, H, W), the network prediction (epsilon / v / x0 as the
scheduler's ``prediction_type`` says; the denoiser does not care).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import Tensor, nn

from mmsim_core.configuration import config_init

TARGETS = ("frames", "warped_residual")


@dataclass
class DenoiserConfig:
    """Sizes of :class:`VideoDenoiser`. Validates early."""

    in_channels: int = 3
    """Channels of one video frame (3: pixel space)."""
    context_frames: int = 4
    """h: context frames concatenated with every noisy frame."""
    num_frames: int = 8
    """F: future frames denoised jointly."""
    sample_size: int = 64
    patch_size: int = 4
    """Space-to-depth factor before the UNet (4: 64x64 -> 16x16 tokens; 1: pixel space)."""
    block_channels: tuple[int, ...] = (128, 192)
    """Channels per resolution level (each level after the first halves the resolution)."""
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (True, True)
    """Levels that get a factorised space/time/cross-attention block after each ResBlock."""
    attention_head_dim: int = 32
    cross_attention_dim: int = 256
    """d: size of the action feature y° (the action encoder's ``feature_dim``)."""
    cond_tokens: int = 4
    """Tokens each step's y°_t is projected to for cross-attention."""
    use_action_history: bool = True
    """Cross-attend also to the h history steps' y° (paper Table 11 h(x,a)=4 vs h(x)=4)."""
    temporal_attention: bool = True
    film_conditioning: bool = True
    """Add W·y°_t to each frame's timestep embedding (FiLM in every ResBlock)."""
    ff_mult: int = 2
    dropout: float = 0.0
    norm_groups: int = 32
    target: str = "frames"
    """What is diffused: ``"frames"`` (the future frames, as in the paper) or ``"warped_residual"``: their
    difference from an anchor frame, times ``residual_scale``. The anchor is the last context frame moved by
    the pipeline's :class:`~mmsim_core.models.action_warp.ActionWarp` (the camera's ego-motion, the hands'
    keypoint flow) or, without one, the last context frame itself; it is also an input channel. Head
    motion, most of the pixel change in egocentric video, is then a 6-number affine per frame instead of
    texture re-synthesised texel by texel, and "nothing else moves" is the easy default."""
    residual_scale: float = 3.0
    """Scales the residual (std ~0.16 on the synthetic world) to about the spread of frames (~0.47)."""
    spatial_channels: int = 0
    """Channels of a spatial condition (B, F, C, G, G) added to the first feature map (the action warp's hand
    placement map; ``SimulatorConfig`` sets it from ``action_warp``). 0 = none."""
    spatial_cells: int = 2
    """Cells per token side the spatial condition keeps (pixel-unshuffled onto channels), at most
    ``patch_size``: 2 puts a 16x16 map on 8x8 tokens; a projected hand map's keypoints want 4 (32x32)."""

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {list(TARGETS)}, got {self.target!r}")
        if self.residual_scale <= 0:
            raise ValueError(f"residual_scale must be > 0, got {self.residual_scale}")
        if self.target == "warped_residual" and self.context_frames < 1:
            raise ValueError("target='warped_residual' needs context_frames >= 1 (it warps the last one)")
        self.block_channels = tuple(int(c) for c in self.block_channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if len(self.block_channels) < 1:
            raise ValueError("block_channels must name at least one level")
        if len(self.attention_levels) != len(self.block_channels):
            raise ValueError(
                f"attention_levels must have one entry per level ({len(self.block_channels)}), "
                f"got {len(self.attention_levels)}"
            )
        if self.patch_size < 1 or self.sample_size % self.patch_size:
            raise ValueError(f"patch_size must divide sample_size={self.sample_size}, got {self.patch_size}")
        down = self.patch_size * 2 ** (len(self.block_channels) - 1)
        if self.sample_size % down:
            raise ValueError(
                f"sample_size={self.sample_size} must be divisible by patch_size * 2**(levels-1) = {down}"
            )
        for c, attn in zip(self.block_channels, self.attention_levels):
            if c % self.norm_groups:
                raise ValueError(f"block_channels must be multiples of norm_groups={self.norm_groups}, got {c}")
            if attn and c % self.attention_head_dim:
                raise ValueError(
                    f"block_channels must be multiples of attention_head_dim={self.attention_head_dim}, got {c}"
                )
        if self.spatial_channels < 0:
            raise ValueError(f"spatial_channels must be >= 0, got {self.spatial_channels}")
        if self.spatial_cells < 1:
            raise ValueError(f"spatial_cells must be >= 1, got {self.spatial_cells}")
        for name in ("context_frames", "num_frames", "cross_attention_dim", "cond_tokens", "layers_per_block"):
            if getattr(self, name) < 1 and not (name == "context_frames" and getattr(self, name) == 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a per-frame FiLM (scale, shift) from the frame embedding."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        # x: (N, C, h, w) with N = B*F frames; emb: (N, E) one embedding per frame
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention on (N, L, C) queries with optional (N, S, Ck) keys/values."""

    def __init__(self, dim: int, head_dim: int, kv_dim: int | None = None, zero_out: bool = False):
        super().__init__()
        self.heads = dim // head_dim
        kv_dim = kv_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        if zero_out:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def forward(self, x: Tensor, kv: Tensor | None = None) -> Tensor:
        kv = x if kv is None else kv
        q, k, v = (
            rearrange(t, "n l (a c) -> n a l c", a=self.heads) for t in (self.to_q(x), self.to_k(kv), self.to_v(kv))
        )
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(rearrange(out, "n a l c -> n l (a c)"))


class SpaceTimeBlock(nn.Module):
    """Factorised transformer block: spatial self-attn, per-frame cross-attn, temporal attn, FF."""

    def __init__(self, dim: int, cfg: DenoiserConfig):
        super().__init__()
        self.num_frames = cfg.num_frames
        self.norm_in = nn.GroupNorm(cfg.norm_groups, dim)
        self.proj_in = nn.Linear(dim, dim)
        self.norm_s = nn.LayerNorm(dim)
        self.attn_s = Attention(dim, cfg.attention_head_dim)
        self.norm_c = nn.LayerNorm(dim)
        self.attn_c = Attention(dim, cfg.attention_head_dim, kv_dim=cfg.cross_attention_dim)
        self.temporal = cfg.temporal_attention
        if self.temporal:
            self.frame_pos = nn.Parameter(torch.zeros(cfg.num_frames, dim))
            self.norm_t = nn.LayerNorm(dim)
            self.attn_t = Attention(dim, cfg.attention_head_dim, zero_out=True)
        self.norm_f = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, cfg.ff_mult * dim), nn.GELU(), nn.Linear(cfg.ff_mult * dim, dim))
        self.proj_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        # x: (N, C, h, w) with N = B*F; cond: (N, S, d) the conditioning tokens of each frame
        n, c, hh, ww = x.shape
        t = rearrange(self.norm_in(x), "n c h w -> n (h w) c")  # (N, L, C)
        t = self.proj_in(t)
        t = t + self.attn_s(self.norm_s(t))
        t = t + self.attn_c(self.norm_c(t), cond)
        if self.temporal:
            t = rearrange(t, "(b f) l c -> (b l) f c", f=self.num_frames)  # (B*L, F, C)
            t = t + self.frame_pos
            t = t + self.attn_t(self.norm_t(t))
            t = rearrange(t, "(b l) f c -> (b f) l c", l=hh * ww)
        t = t + self.ff(self.norm_f(t))
        t = self.proj_out(t)
        return x + rearrange(t, "n (h w) c -> n c h w", h=hh, w=ww)


@dataclass
class VideoDenoiserOutput(BaseOutput):
    sample: Tensor
    """(B, F, C, H, W) the prediction (epsilon, v or x0, per the scheduler's prediction_type)."""


# ----------------------------------------------------------------------------------------------
# The denoiser
# ----------------------------------------------------------------------------------------------
@config_init(DenoiserConfig)
class VideoDenoiser(ModelMixin, ConfigMixin):
    """Factorised space-time UNet denoising F future frames given h context frames and y° (B, h+F, d)."""

    _supports_gradient_checkpointing = False

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        chans = cfg.block_channels
        c0 = chans[0]
        emb_dim = 4 * c0
        num_steps = cfg.context_frames + cfg.num_frames
        d = cfg.cross_attention_dim

        # Timestep + per-frame embedding (FiLM source for every ResBlock).
        self.time_proj = Timesteps(c0, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(c0, emb_dim)
        self.frame_embedding = nn.Parameter(torch.zeros(cfg.num_frames, emb_dim))
        self.action_film = nn.Linear(d, emb_dim) if cfg.film_conditioning else None

        # y°_t -> cond_tokens tokens, plus a learned embedding telling the steps apart.
        self.cond_proj = nn.Linear(d, cfg.cond_tokens * d)
        self.cond_norm = nn.LayerNorm(d)
        self.step_embedding = nn.Parameter(torch.randn(num_steps, 1, d) * 0.02)

        # Each frame's input: its noisy frame + all h context frames on the channel axis (paper §2.3),
        # plus, with a warped residual, the warped last frame the residual is measured from.
        warped = cfg.target == "warped_residual"
        cin = cfg.in_channels * (1 + cfg.context_frames + int(warped)) * p * p
        self.conv_in = nn.Conv2d(cin, c0, 3, padding=1)
        # The spatial condition enters at the token grid with spatial_cells² cells per token, through a
        # zero-initialised convolution (ControlNet's zero conv): a model with it starts as one without.
        self.spatial_cells = min(p, cfg.spatial_cells)
        self.spatial_in = None
        if cfg.spatial_channels:
            self.spatial_in = nn.Conv2d(cfg.spatial_channels * self.spatial_cells**2, c0, 3, padding=1, bias=False)
            nn.init.zeros_(self.spatial_in.weight)

        self.down = nn.ModuleList()
        skips = [c0]
        cur = c0
        for level, (c, attn) in enumerate(zip(chans, cfg.attention_levels)):
            stage = nn.ModuleList()
            for _ in range(cfg.layers_per_block):
                stage.append(ResBlock(cur, c, emb_dim, cfg.norm_groups, cfg.dropout))
                stage.append(SpaceTimeBlock(c, cfg) if attn else nn.Identity())
                cur = c
                skips.append(cur)
            if level < len(chans) - 1:
                stage.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
            self.down.append(stage)

        self.mid = nn.ModuleList(
            [
                ResBlock(cur, cur, emb_dim, cfg.norm_groups, cfg.dropout),
                SpaceTimeBlock(cur, cfg) if cfg.attention_levels[-1] else nn.Identity(),
                ResBlock(cur, cur, emb_dim, cfg.norm_groups, cfg.dropout),
            ]
        )

        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            c, attn = chans[level], cfg.attention_levels[level]
            stage = nn.ModuleList()
            for _ in range(cfg.layers_per_block + 1):
                stage.append(ResBlock(cur + skips.pop(), c, emb_dim, cfg.norm_groups, cfg.dropout))
                stage.append(SpaceTimeBlock(c, cfg) if attn else nn.Identity())
                cur = c
            if level > 0:
                stage.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cur, cur, 3, padding=1)))
            self.up.append(stage)

        self.norm_out = nn.GroupNorm(cfg.norm_groups, cur)
        self.conv_out = nn.Conv2d(cur, cfg.in_channels * p * p, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> "VideoDenoiser":
        model = super().from_pretrained(*args, **kwargs)
        own_memory(model)
        return model

    # ------------------------------------------------------------------------------------------
    def anchor(self, context: Tensor) -> Tensor | None:
        """The anchor without an action warp, (B, F, C, H, W): the last context frame for every future frame
        (None for ``target="frames"``)."""
        if self.cfg.target == "frames":
            return None
        return context[:, -1:].expand(-1, self.cfg.num_frames, -1, -1, -1)

    def frames_to_sample(self, future: Tensor, context: Tensor, anchor: Tensor | None = None) -> Tensor:
        """Future frames (B, F, 3, H, W) in [-1, 1] -> the clean sample x0 the diffusion models.
        ``anchor``: :meth:`anchor`'s output (default: the one without ego-motion)."""
        if self.cfg.target == "frames":
            return future
        if anchor is None:
            anchor = self.anchor(context)
        return (future - anchor) * self.cfg.residual_scale

    def sample_to_frames(self, sample: Tensor, context: Tensor, anchor: Tensor | None = None) -> Tensor:
        """Inverse of :meth:`frames_to_sample`, clamped to [-1, 1]: (B, F, 3, H, W)."""
        if self.cfg.target != "frames":
            if anchor is None:
                anchor = self.anchor(context)
            sample = anchor + sample / self.cfg.residual_scale
        return sample.clamp(-1, 1)

    def _conditioning_tokens(self, y: Tensor) -> Tensor:
        """y° (B, T, d) -> per-frame cross-attention tokens (B*F, S, d)."""
        cfg = self.cfg
        h, f = cfg.context_frames, cfg.num_frames
        tok = rearrange(self.cond_proj(y), "b t (k d) -> b t k d", k=cfg.cond_tokens)  # (B, T, K, d)
        tok = self.cond_norm(tok) + self.step_embedding  # (B, T, K, d)
        own = rearrange(tok[:, h:], "b f k d -> (b f) k d")  # (B*F, K, d): frame k sees its own step
        if cfg.use_action_history and h > 0:
            hist = rearrange(tok[:, :h], "b t k d -> b (t k) d")  # (B, h*K, d)
            hist = hist.repeat_interleave(f, dim=0)  # (B*F, h*K, d)
            own = torch.cat([own, hist], dim=1)
        return own

    def _spatial_tokens(self, spatial: Tensor, b: int, f: int) -> Tensor:
        """(B, F, C, G, G) -> (B*F, C * cells², H/p, W/p): resampled to the token grid, cells to channels."""
        cfg = self.cfg
        if spatial.dim() != 5 or tuple(spatial.shape[:3]) != (b, f, cfg.spatial_channels):
            raise ValueError(
                f"spatial must be (B={b}, F={f}, {cfg.spatial_channels}, G, G), got {tuple(spatial.shape)}"
            )
        tokens = cfg.sample_size // cfg.patch_size
        s = rearrange(spatial.to(self.spatial_in.weight.dtype), "b f c y x -> (b f) c y x")
        s = F.interpolate(s, size=(tokens * self.spatial_cells,) * 2, mode="bilinear", align_corners=False)
        return F.pixel_unshuffle(s, self.spatial_cells) if self.spatial_cells > 1 else s

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        context: Tensor,
        encoder_hidden_states: Tensor,
        anchor: Tensor | None = None,
        spatial: Tensor | None = None,
        return_dict: bool = True,
    ) -> VideoDenoiserOutput | tuple[Tensor]:
        """
        Args:
            sample: noisy future frames (B, F, C, H, W).
            timestep: diffusion timestep, (B,) or scalar.
            context: the h context frames (B, h, C, H, W) in [-1, 1].
            encoder_hidden_states: y° (B, h+F, d) from the action encoder.
            anchor: with ``target="warped_residual"``, the warped last frame (B, F, C, H, W) the sample is
                measured from (default: the unwarped last frame); it is also an input, so the network
                sees where the warp put things.
            spatial: with ``spatial_channels``, the spatial condition (B, F, spatial_channels, G, G) of each
                future frame (the hand placement map); None = no spatial information (all zeros).
        """
        cfg = self.cfg
        b, f = sample.shape[:2]
        h = cfg.context_frames
        if f != cfg.num_frames:
            raise ValueError(f"sample must have num_frames={cfg.num_frames} frames, got {f}")
        if context.shape[1] != h:
            raise ValueError(f"context must have context_frames={h} frames, got {context.shape[1]}")
        if encoder_hidden_states.shape[1:] != (h + f, cfg.cross_attention_dim):
            raise ValueError(
                f"encoder_hidden_states must be (B, {h + f}, {cfg.cross_attention_dim}), "
                f"got {tuple(encoder_hidden_states.shape)}"
            )
        y = encoder_hidden_states.to(sample.dtype)

        # Frame embedding: timestep + frame position + (FiLM) the frame's own action feature.
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t[None]
        t = t.expand(b)
        emb = self.time_embedding(self.time_proj(t).to(sample.dtype))  # (B, E)
        emb = emb[:, None] + self.frame_embedding  # (B, F, E)
        if self.action_film is not None:
            emb = emb + self.action_film(y[:, h:])  # (B, F, E)
        emb = rearrange(emb, "b f e -> (b f) e")
        cond = self._conditioning_tokens(y)  # (B*F, S, d)

        # Every noisy frame gets all h context frames on its channel axis.
        ctx = rearrange(context.to(sample.dtype), "b h c y x -> b 1 (h c) y x").expand(-1, f, -1, -1, -1)
        parts = [sample, ctx]
        if cfg.target == "warped_residual":
            if anchor is None:
                anchor = self.anchor(context)
            parts.append(anchor.detach().to(sample.dtype))  # the warp learns from its own loss only
        x = torch.cat(parts, dim=2)  # (B, F, C(1+h[+1]), H, W)
        x = rearrange(x, "b f c y x -> (b f) c y x")
        x = F.pixel_unshuffle(x, cfg.patch_size) if cfg.patch_size > 1 else x  # (B*F, C(1+h)p², H/p, W/p)
        x = self.conv_in(x)
        if self.spatial_in is not None and spatial is not None:
            x = x + self.spatial_in(self._spatial_tokens(spatial, b, f))

        skips = [x]
        for stage in self.down:
            for layer in stage:
                if isinstance(layer, ResBlock):
                    x = layer(x, emb)
                elif isinstance(layer, SpaceTimeBlock):
                    x = layer(x, cond)
                    skips.append(x)
                elif isinstance(layer, nn.Identity):
                    skips.append(x)
                else:  # downsample
                    x = layer(x)
                    skips.append(x)

        x = self.mid[0](x, emb)
        if isinstance(self.mid[1], SpaceTimeBlock):
            x = self.mid[1](x, cond)
        x = self.mid[2](x, emb)

        for stage in self.up:
            for layer in stage:
                if isinstance(layer, ResBlock):
                    x = layer(torch.cat([x, skips.pop()], dim=1), emb)
                elif isinstance(layer, SpaceTimeBlock):
                    x = layer(x, cond)
                elif isinstance(layer, nn.Identity):
                    continue
                else:  # upsample
                    x = layer(x)

        x = self.conv_out(F.silu(self.norm_out(x)))
        x = F.pixel_shuffle(x, cfg.patch_size) if cfg.patch_size > 1 else x  # (B*F, C, H, W)
        out = rearrange(x, "(b f) c y x -> b f c y x", b=b)
        if not return_dict:
            return (out,)
        return VideoDenoiserOutput(sample=out)


def own_memory(module: nn.Module) -> nn.Module:
    """Copy parameters/buffers loaded from a (memory-mapped) safetensors file into fresh, aligned
    tensors. CPU kernels vectorise differently on misaligned memory, which changes results in the
    last bit; after this a loaded model computes bit-identically to the one that was saved."""
    with torch.no_grad():
        for p in module.parameters():
            p.data = p.data.clone()
        for buf_owner in module.modules():
            for name, b in list(buf_owner._buffers.items()):
                if b is not None:
                    buf_owner._buffers[name] = b.clone()
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["TARGETS", "DenoiserConfig", "VideoDenoiser", "VideoDenoiserOutput", "count_parameters", "own_memory"]

