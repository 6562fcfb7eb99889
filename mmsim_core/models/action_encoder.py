"""The multisensory action encoder: experts → projection → anchoring → fusion → latent interaction.

Paper §2.1–2.2 and §7.4. For every step t of a clip (h history + F future steps) and every action
modality m that is present:

    h_{t,m} = E_m(a_{t,m})                              expert, 128-d   (+ decoder D_m for L_ssl)
    z_{t,m} = P_m(h_{t,m} + e_t)                        projection to the context-feature size d
    z_{t,m} ← anchoring(z_{t,m}, z̄_x)                    channel-wise cross-attention to the anchor
    y_t     = fusion({z_{t,m}}_{m present})             masked channel-wise softmax (default)
    y°_t    = interaction(y_t, c_t)                     relaxed hyperplane w.r.t. the context vector

``e_t`` is a learned step embedding (zero at init) so that identical signals at different steps can
be told apart. Text, when configured (``text_dim``), is one more modality: its embedding
(B, text_dim) goes through its own expert and projection and is repeated over the steps.

Missing modalities (key absent from ``actions`` or ``action_mask[name]`` False) are never touched:
experts and their batch-norms only see the rows where the modality is present, and fusion leaves
the others out. When no modality at all is present for a sample (classifier-free guidance, the
"actions dropped" baseline), ``y`` and ``y°`` are a learned per-step null embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import Tensor, nn

from mmsim_core.configuration import config_init
from mmsim_core.errors import ActionInputError
from mmsim_core.models.anchoring import ChannelAnchoring
from mmsim_core.models.experts import ModalityDecoder, ModalityExpert, ProjectionHead
from mmsim_core.models.fusion import FUSIONS, Fusion
from mmsim_core.models.interaction import INTERACTIONS, LatentInteraction, context_vectors
from mmsim_core.models.losses import norm_loss, reconstruction_loss
from mmsim_core.schema import MODALITIES, MODALITY_NAMES, check_modality_names

ANCHORINGS = ("channel_attention", "none")
TEXT = "text"


@dataclass
class ActionEncoderConfig:
    """The paper's action encoder (and the sizes the Table 2 baselines share). Validates early."""

    modalities: tuple[str, ...] = MODALITY_NAMES
    """Sensory modalities the encoder has experts for (subset of ``schema.MODALITY_NAMES``)."""
    feature_dim: int = 1024
    """d: size of the context-frame features (1024 = OpenCLIP ViT-H-14 in the paper)."""
    expert_hidden: int = 128
    expert_layers: int = 4
    expert_dropout: float = 0.1
    projection_dims: tuple[int, ...] = (512, 768)
    anchoring: str = "channel_attention"
    fusion: str = "softmax"
    interaction: str = "hyperplane"
    text_dim: int | None = None
    """If set, an extra text expert takes (B, text_dim) text embeddings."""
    num_steps: int = 12
    """h + F: steps covered by the step embedding and the null embedding."""
    anchor_group_size: int = 64
    """Channels per attention group in the anchoring (see ``anchoring.py``); capped at d."""

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        self.projection_dims = tuple(int(x) for x in self.projection_dims)
        try:
            check_modality_names(self.modalities)
        except ValueError as e:
            raise ValueError(f"modalities: {e}") from None
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must not repeat, got {list(self.modalities)}")
        if not self.modalities and self.text_dim is None:
            raise ValueError("modalities must not be empty unless text_dim is set (text-only conditioning)")
        for name, value, choices in (("anchoring", self.anchoring, ANCHORINGS), ("fusion", self.fusion, FUSIONS),
                                     ("interaction", self.interaction, INTERACTIONS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        for name in ("feature_dim", "expert_hidden", "num_steps", "anchor_group_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.expert_layers < 2:
            raise ValueError(f"expert_layers must be at least 2 (batch-norm on the first two), got {self.expert_layers}")
        if not 0.0 <= self.expert_dropout < 1.0:
            raise ValueError(f"expert_dropout must be in [0, 1), got {self.expert_dropout}")
        if any(x <= 0 for x in self.projection_dims):
            raise ValueError(f"projection_dims must be positive, got {list(self.projection_dims)}")
        if self.text_dim is not None and self.text_dim <= 0:
            raise ValueError(f"text_dim must be positive or None, got {self.text_dim}")
        group = min(self.anchor_group_size, self.feature_dim)
        if self.anchoring != "none" and self.feature_dim % group:
            raise ValueError(
                f"feature_dim ({self.feature_dim}) must be divisible by anchor_group_size ({group}) for channel anchoring"
            )

    @property
    def fused_names(self) -> tuple[str, ...]:
        """Modality slots in fusion order: the sensory modalities, then text if configured."""
        return self.modalities + ((TEXT,) if self.text_dim is not None else ())


@dataclass
class ActionEncoderOutput(BaseOutput):
    interaction: Tensor | None = None
    """y°: (B, T, d) — what the video denoiser cross-attends to, per frame."""
    fused: Tensor | None = None
    """y: (B, T, d)."""
    modality_features: dict[str, Tensor] | None = None
    """Projected (and anchored) z_{t,m}: (B, T, d) per configured modality; zeros where absent."""
    fusion_weights: Tensor | None = None
    """(B, T, M, d) softmax weights over ``config.fused_names`` (None for other fusions)."""
    ssl_loss: Tensor | None = None
    """Scalar L_ssl: Σ_m of the per-element squared reconstruction error over present rows."""
    norm_loss: Tensor | None = None
    """Scalar L_norm when ``target_features`` is given, else None."""


@config_init(ActionEncoderConfig)
class MultisensoryActionEncoder(ModelMixin, ConfigMixin):
    """Encodes multisensory action signals into the per-step interaction features ``y°``."""

    config_name = "config.json"

    def __init__(self, cfg: ActionEncoderConfig):
        super().__init__()
        self.cfg = cfg
        d, hid = cfg.feature_dim, cfg.expert_hidden
        self.experts = nn.ModuleDict(
            {m: ModalityExpert(MODALITIES[m].size, hid, cfg.expert_layers, cfg.expert_dropout) for m in cfg.modalities}
        )
        self.decoders = nn.ModuleDict({m: ModalityDecoder(MODALITIES[m].size, hid) for m in cfg.modalities})
        self.projections = nn.ModuleDict({m: ProjectionHead(hid, d, cfg.projection_dims) for m in cfg.modalities})
        if cfg.text_dim is not None:
            # Text is one vector per sample, so a batch can hold a single text row: layer-norm
            # instead of batch-norm keeps the expert usable (and deterministic) at batch size 1.
            self.text_expert = ModalityExpert(cfg.text_dim, hid, cfg.expert_layers, cfg.expert_dropout, norm="layer")
            self.text_projection = ProjectionHead(hid, d, cfg.projection_dims, norm="layer")
        self.step_embedding = nn.Parameter(torch.zeros(cfg.num_steps, hid))
        self.null_embedding = nn.Parameter(torch.randn(cfg.num_steps, d) * 0.02)
        self.channel_anchoring = ChannelAnchoring(d, cfg.anchor_group_size) if cfg.anchoring == "channel_attention" else None
        self.fuse = Fusion(cfg.fusion, len(cfg.fused_names), d)
        self.latent_interaction = LatentInteraction(cfg.interaction)

    # ------------------------------------------------------------------------------------------
    def _check_inputs(self, actions, context_features, action_mask, text_features, target_features, num_steps):
        d = self.cfg.feature_dim
        if context_features.dim() != 3 or context_features.shape[-1] != d:
            raise ActionInputError(
                f"context_features must have shape (B, h, {d}), got {tuple(context_features.shape)}"
            )
        B = context_features.shape[0]
        T = num_steps
        for name, x in actions.items():
            if name not in MODALITIES:
                raise ActionInputError(f"actions: unknown modality {name!r}; expected some of {list(MODALITY_NAMES)}")
            shape = MODALITIES[name].shape
            if x.dim() != 2 + len(shape) or tuple(x.shape[2:]) != shape or x.shape[0] != B:
                raise ActionInputError(
                    f"actions[{name!r}] must have shape (B={B}, T, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
                )
            if T is None:
                T = x.shape[1]
            elif x.shape[1] != T:
                raise ActionInputError(f"actions[{name!r}] has {x.shape[1]} steps, expected {T} like the other inputs")
        if T is None:
            T = target_features.shape[1] if target_features is not None else self.cfg.num_steps
        if T > self.cfg.num_steps:
            raise ActionInputError(f"actions have {T} steps but the encoder was built for num_steps={self.cfg.num_steps}")
        if T < context_features.shape[1]:
            raise ActionInputError(f"actions have {T} steps, fewer than the {context_features.shape[1]} context frames")
        for name, m in (action_mask or {}).items():
            if name not in MODALITIES and name != TEXT:
                raise ActionInputError(f"action_mask: unknown modality {name!r}")
            if tuple(m.shape) != (B,):
                raise ActionInputError(f"action_mask[{name!r}] must have shape ({B},), got {tuple(m.shape)}")
        if text_features is not None:
            if self.cfg.text_dim is None:
                raise ActionInputError("text_features were given but the encoder has no text expert (text_dim=None)")
            if tuple(text_features.shape) != (B, self.cfg.text_dim):
                raise ActionInputError(
                    f"text_features must have shape ({B}, {self.cfg.text_dim}), got {tuple(text_features.shape)}"
                )
        if target_features is not None and tuple(target_features.shape) != (B, T, d):
            raise ActionInputError(f"target_features must have shape ({B}, {T}, {d}), got {tuple(target_features.shape)}")
        return B, T

    def _present(self, name: str, available: bool, action_mask, B: int, device) -> Tensor:
        if not available:
            return torch.zeros(B, dtype=torch.bool, device=device)
        if action_mask is not None and name in action_mask:
            return action_mask[name].to(device=device, dtype=torch.bool)
        return torch.ones(B, dtype=torch.bool, device=device)

    def forward(
        self,
        actions: dict[str, Tensor],
        context_features: Tensor,
        action_mask: dict[str, Tensor] | None = None,
        text_features: Tensor | None = None,
        target_features: Tensor | None = None,
        num_steps: int | None = None,
    ) -> ActionEncoderOutput:
        """Encode actions into per-step interaction features.

        actions: {name: (B, T, *shape)} normalised, any subset; modalities the encoder was not
            configured with are ignored (a model trained without EMG cannot use EMG).
        context_features: z_x of the h context frames (B, h, d).
        action_mask: {name: bool (B,)}; False = modality absent for that sample ("text" accepted).
        text_features: (B, text_dim) or None.
        target_features: (B, T, d) ground-truth features of all T frames, for L_norm (training).
        num_steps: T when ``actions`` is empty (defaults to the target's T, else ``config.num_steps``).
        """
        actions = {k: v for k, v in actions.items() if k in self.experts or k not in MODALITIES}
        B, T = self._check_inputs(actions, context_features, action_mask, text_features, target_features, num_steps)
        cfg, d, device, dtype = self.cfg, self.cfg.feature_dim, context_features.device, self.dtype
        context_features = context_features.to(dtype)  # e.g. fp32 features of a frozen tower into a bf16 encoder
        step_emb = self.step_embedding[:T]  # (T, hidden)

        slots, present, ssl_terms = [], [], []
        for name in cfg.modalities:
            mask = self._present(name, name in actions, action_mask, B, device)  # (B,)
            full = torch.zeros(B, T, d, device=device, dtype=dtype)
            if mask.any():
                idx = mask.nonzero().squeeze(1)  # (n,)
                a = actions[name].to(device=device, dtype=dtype).index_select(0, idx)  # (n, T, *shape)
                n = a.shape[0]
                a = a.reshape(n * T, -1)  # (n*T, size): one row per present step
                h = self.experts[name](a)  # (n*T, hidden)
                ssl_terms.append(reconstruction_loss(self.decoders[name](h), a))
                h = (h.view(n, T, -1) + step_emb).reshape(n * T, -1)
                z = self.projections[name](h).view(n, T, d)
                full = full.index_copy(0, idx, z)
            slots.append(full)
            present.append(mask)
        if cfg.text_dim is not None:
            mask = self._present(TEXT, text_features is not None, action_mask, B, device)
            full = torch.zeros(B, T, d, device=device, dtype=dtype)
            if mask.any():
                idx = mask.nonzero().squeeze(1)
                h = self.text_expert(text_features.to(device=device, dtype=dtype).index_select(0, idx))  # (n, hidden)
                h = h[:, None, :] + step_emb  # (n, T, hidden)
                z = self.text_projection(h)  # (n, T, d)
                full = full.index_copy(0, idx, z)
            slots.append(full)
            present.append(mask)

        features = torch.stack(slots, dim=2)  # (B, T, M, d)
        present = torch.stack(present, dim=1)  # (B, M)
        if self.channel_anchoring is not None:
            anchor = context_features.mean(dim=1)  # z̄_x: (B, d)
            features = self.channel_anchoring(features, anchor)
        features = features.masked_fill(~present[:, None, :, None], 0.0)

        fused, weights = self.fuse(features, present)  # (B, T, d), (B, T, M, d) | None
        c = context_vectors(context_features, T)  # (B, T, d)
        inter = self.latent_interaction(fused, c)

        none = ~present.any(dim=1)  # (B,) samples with every modality dropped
        if none.any():
            null = self.null_embedding[:T][None].expand(B, T, d)
            fused = torch.where(none[:, None, None], null, fused)
            inter = torch.where(none[:, None, None], null, inter)
            if weights is not None:
                weights = weights.masked_fill(none[:, None, None, None], 0.0)

        ssl = torch.stack(ssl_terms).sum() if ssl_terms else torch.zeros((), device=device, dtype=dtype)
        nl = norm_loss(inter, target_features, sample_mask=~none) if target_features is not None else None
        return ActionEncoderOutput(
            interaction=inter,
            fused=fused,
            modality_features={name: features[:, :, i] for i, name in enumerate(cfg.fused_names)},
            fusion_weights=weights,
            ssl_loss=ssl,
            norm_loss=nl,
        )
