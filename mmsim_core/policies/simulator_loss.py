"""The frozen simulator as a differentiable function of the actions, and the simulator loss L_sim.

    frames = simulate(pipe, context, actions, latents)         # (B, F, 3, H, W) in [-1, 1], grad to actions
    l_sim = simulator_loss(pipe, context, actions, future, latents)

``MultisensoryVideoPipeline.__call__`` runs under ``torch.no_grad`` (and returns uint8 or [0, 1] frames);
:func:`simulate` takes the same steps -- encode the context, encode the actions, the action warp's anchor and
hand map, the sampler loop from the given initial noise, ``denoiser.sample_to_frames`` -- with the graph kept,
so a policy's actions can be trained through the simulator's prediction of what they do. The simulator itself
is frozen (eval mode, no parameter gradients): only the actions move. Classifier-free guidance and step
callbacks are left out (guidance scale 1, the pipeline's default).
"""

from __future__ import annotations

import inspect
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def simulator_modules(pipe) -> list[torch.nn.Module]:
    return [m for m in (pipe.denoiser, pipe.action_encoder, pipe.action_warp, pipe.context_encoder,
                        pipe.text_encoder) if isinstance(m, torch.nn.Module)]  # fmt: skip


def freeze_simulator(pipe) -> None:
    """Eval mode (no dropout, frozen norms) and no parameter gradients for every component of ``pipe``."""
    for m in simulator_modules(pipe):
        m.eval()
        m.requires_grad_(False)


def simulate(pipe, context: np.ndarray | Tensor, actions: Mapping[str, Tensor], latents: Tensor,
             action_mask: Mapping[str, Tensor] | None = None, text: list[str] | None = None,
             num_inference_steps: int | None = None) -> Tensor:
    """The simulator's future frames (B, F, 3, H, W) in [-1, 1], differentiable w.r.t. ``actions``.

    Args:
        pipe: a :class:`~mmsim_core.pipelines.multisensory.MultisensoryVideoPipeline` (frozen here).
        context: uint8 (B, h, H, W, 3) context frames.
        actions: {name: float (B, h+F, *shape)} normalised; tensors that may require grad.
        latents: the initial noise (B, F, C, H, W); fixed, so the same actions give the same frames.
        action_mask, text, num_inference_steps: as for the pipeline.
    """
    freeze_simulator(pipe)
    device = pipe._execution_device
    dtype = pipe.denoiser.dtype
    steps = int(num_inference_steps or pipe.config.default_num_inference_steps)
    shape = (int(context.shape[0]), pipe.future_frames, pipe.denoiser.config.in_channels, pipe.sample_size,
             pipe.sample_size)
    if tuple(latents.shape) != shape:
        raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")

    # 2. Context frames (B, h, 3, H, W) in [-1, 1] and their features z_x (B, h, d).
    context_frames, context_features = pipe.encode_context(context)
    # 3. Actions -> y° (B, h+F, d); the tensors keep their graph through the pipeline's own encoders.
    y = pipe.encode_actions(actions, context_features, action_mask, text)
    context_in = context_frames.to(dtype)
    # 4. Action warp: anchor (B, F, 3, H, W) and hand map, or the plain last-frame anchor.
    warp = pipe.warp_actions(actions, context_frames, action_mask)
    anchor = (warp.anchor.to(dtype) if warp is not None and warp.anchor is not None
              else pipe.denoiser.anchor(context_in))
    spatial = warp.spatial if warp is not None else None
    # 5. Initial noise.
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=device)
    latents = latents.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
    # 6. Sampler loop (no generator: the samplers used here are deterministic given the initial noise).
    step_kwargs = {}
    if "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = None
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(latents, t)  # the VP state x_t
        pred = pipe.denoiser(model_in, t, context_in, y, anchor=anchor, spatial=spatial).sample
        latents = scheduler.step(pred, t, latents, **step_kwargs).prev_sample
    # 7. Pixel space (anchor + residual for residual targets), clamped to [-1, 1].
    anchor = anchor.to(latents.dtype) if anchor is not None else None
    return pipe.denoiser.sample_to_frames(latents, context_frames.to(latents.dtype), anchor)


def simulator_loss(pipe, context, actions: Mapping[str, Tensor], future: Tensor, latents: Tensor,
                   action_mask: Mapping[str, Tensor] | None = None, text: list[str] | None = None,
                   num_inference_steps: int | None = None) -> Tensor:
    """L_sim: mean squared error between the simulator's frames under ``actions`` and the true future frames
    ``future`` (B, F, 3, H, W) in [-1, 1], over every future step."""
    frames = simulate(pipe, context, actions, latents, action_mask, text, num_inference_steps)
    return F.mse_loss(frames, future.to(frames))


__all__ = ["simulate", "simulator_loss", "freeze_simulator"]
