"""Feature-extraction baselines of paper Table 2, as drop-in replacements of the action encoder.

Each class here takes the same inputs as :class:`MultisensoryActionEncoder` and returns the same
:class:`ActionEncoderOutput`, so the denoiser, the pipeline, training and evaluation run unchanged:
``interaction`` (B, T, d) is what the denoiser cross-attends to, the method's own auxiliary loss goes
in ``ssl_loss`` (weighted like L_ssl), ``norm_loss`` is None (L_norm belongs to our latent
interaction, which the baselines do not have). Select one with ``SimulatorConfig.feature_extractor``
(``--set model.feature_extractor=mutex``); sizes come from the same ``ActionEncoderConfig`` as ours
(expert MLPs, projection heads, d) so every extractor gets the same capacity per modality.

What is shared with our encoder, for a like-for-like comparison: per-step processing, the learned
step embedding ``e_t``, the learned null embedding for samples with no modality present (condition
dropout / classifier-free guidance), and "a missing modality is simply absent" at test time.
What differs is the method:

* :class:`MutexActionEncoder` — MUTEX (Shah et al., CoRL 2023) learns one task representation from
  several specification modalities with (i) masked modelling: some modalities are masked and their
  features predicted from the rest through a cross-modal transformer, and (ii) cross-modal matching:
  the representation is regressed (L2) onto the features of the richest modality, video. Kept: per-
  modality encoders to tokens, random modality masking in training (a learned mask token, at least one
  modality kept), a 2-layer transformer over the modality tokens of each step, masked-feature
  regression, and L2 matching of the fused step feature to the (stop-gradient) feature of the frame at
  that step, future frames included. Conditioning = mean of the unmasked output tokens.
* :class:`ImageBindActionEncoder` — ImageBind (Girdhar et al., CVPR 2023) binds every modality to a
  frozen image embedding with a symmetric InfoNCE loss, and composes modalities by adding their
  L2-normalised embeddings. Kept: per-modality encoders, InfoNCE between each modality's per-step
  embedding and the (stop-gradient) frame feature of that step, negatives = the other clips of the
  batch at the same step (neighbouring steps of one clip are near-duplicates, not negatives),
  learned temperature (init 0.07); conditioning = sum of the normalised embeddings of the modalities
  present, scaled by sqrt(d) so channels have unit scale like ours.
* :class:`LanguageBindActionEncoder` — LanguageBind (Zhu et al., ICLR 2024) binds every modality to a
  frozen language encoder instead of images. Kept: the same encoders and composition as ImageBind;
  InfoNCE between each modality's clip embedding (mean over steps of its normalised step embeddings)
  and the clip description's text embedding (stop-gradient: the text tower is not trained by the
  binding; a learned linear head maps text_dim to d). Clips of one batch with the same description are
  all positives of each other (multi-positive InfoNCE), since one activity has many clips. Text is only
  a training target: at inference the conditioning uses the action signals alone, like every other
  Table 2 row.
* :class:`SignalAgnosticActionEncoder` — signal-agnostic learning (GEM, Du et al. NeurIPS 2021;
  Li et al. 2022) represents every signal as a neural field, a function from coordinates to values,
  with one shared encoder and one shared field decoder for all signal types: no per-modality experts.
  Kept: each step's signals form ONE set of points (modality tag, coordinate of the channel within its
  modality, value); a shared point network encodes every point, attention pooling (learned queries,
  Perceiver-style) reduces the set to one latent per step, and a shared field decoder reconstructs
  values at sampled coordinates from that latent (the auxiliary loss: gradients from every modality
  shape one latent manifold). A missing modality contributes no points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from dataclasses import dataclass

from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import Tensor, nn

from mmsim_core.configuration import config_init, to_dict
from mmsim_core.models.action_encoder import TEXT, ActionEncoderConfig, ActionEncoderOutput, MultisensoryActionEncoder
from mmsim_core.models.experts import ModalityExpert, ProjectionHead
from mmsim_core.schema import MODALITIES

FEATURE_EXTRACTORS = ("multisensory", "mutex", "imagebind", "languagebind", "signal_agnostic")
"""``SimulatorConfig.feature_extractor`` choices: ours (paper §2) and the four Table 2 baselines."""

# Fields of ActionEncoderConfig that configure OUR method only; a baseline must leave them at default.
_OURS_ONLY = {"anchoring": "channel_attention", "fusion": "softmax", "interaction": "hyperplane"}


@dataclass
class BaselineEncoderConfig(ActionEncoderConfig):
    """The sizes a baseline shares with our encoder (experts, projections, d, steps); our method's own choices
    (anchoring, fusion, interaction) stay at their defaults: each baseline has its own."""

    def __post_init__(self):
        super().__post_init__()
        changed = [k for k, default in _OURS_ONLY.items() if getattr(self, k) != default]
        if changed:
            raise ValueError(f"action_encoder {changed} configure our encoder only; a {type(self).__name__} baseline "
                             "has its own fusion (leave them at their defaults)")
        if not self.modalities:
            raise ValueError(f"{type(self).__name__} needs at least one sensory modality")


@dataclass
class MutexConfig(BaselineEncoderConfig):
    mask_prob: float = 0.25
    transformer_layers: int = 2
    transformer_heads: int = 4

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in [0, 1), got {self.mask_prob}")
        if self.feature_dim % self.transformer_heads:
            raise ValueError(f"feature_dim ({self.feature_dim}) must be divisible by transformer_heads "
                             f"({self.transformer_heads})")


@dataclass
class BindConfig(BaselineEncoderConfig):
    temperature: float = 0.07

    def __post_init__(self):
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass
class LanguageBindConfig(BindConfig):
    def __post_init__(self):
        super().__post_init__()
        if self.text_dim is None:
            raise ValueError("LanguageBind binds to text: text_dim must be set (train with text_kind, e.g. 'sentence')")


@dataclass
class SignalAgnosticConfig(BaselineEncoderConfig):
    point_hidden: int = 64
    fourier_bands: int = 6
    num_queries: int = 2
    recon_points: int = 256
    tag_dim: int = 8

    def __post_init__(self):
        super().__post_init__()
        if self.expert_hidden % self.num_queries:
            raise ValueError(f"expert_hidden ({self.expert_hidden}) must be divisible by num_queries ({self.num_queries})")
        for name in ("point_hidden", "fourier_bands", "num_queries", "recon_points", "tag_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------
def info_nce(queries: Tensor, keys: Tensor, logit_scale: Tensor, positives: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE between L2-normalised (N, d) ``queries`` and ``keys``; row i matches key i, or
    every key j with ``positives[i, j]`` (multi-positive: the target spreads evenly over them)."""
    n = queries.shape[0]
    if n < 2:  # a single pair has no negatives: nothing to contrast
        return queries.new_zeros(())
    logits = logit_scale * queries @ keys.t()  # (N, N)
    if positives is None:
        labels = torch.arange(n, device=queries.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    target = positives.to(logits.dtype)
    loss_q = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    loss_k = -(target.t() / target.t().sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
    return 0.5 * (loss_q + loss_k)


class _BaselineEncoder(ModelMixin, ConfigMixin):
    """Input checks, presence masks, step and null embeddings shared by the baselines."""

    config_name = "config.json"

    def _init_common(self, cfg: BaselineEncoderConfig) -> None:
        self.cfg = cfg
        self.step_embedding = nn.Parameter(torch.zeros(cfg.num_steps, cfg.expert_hidden))
        self.null_embedding = nn.Parameter(torch.randn(cfg.num_steps, cfg.feature_dim) * 0.02)

    # Same contract and error messages as MultisensoryActionEncoder (its checks only read ``self.cfg``).
    _check_inputs = MultisensoryActionEncoder._check_inputs
    _present = MultisensoryActionEncoder._present

    def _prepare(self, actions, context_features, action_mask, text_features, target_features, num_steps):
        """Filter/validate inputs; returns (actions, B, T, presence (B, M) over ``cfg.modalities``)."""
        actions = {k: v for k, v in actions.items() if k in self.cfg.modalities or k not in MODALITIES}
        B, T = self._check_inputs(actions, context_features, action_mask, text_features, target_features, num_steps)
        device = context_features.device
        present = [self._present(m, m in actions, action_mask, B, device) for m in self.cfg.modalities]
        present = torch.stack(present, dim=1) if present else torch.zeros(B, 0, dtype=torch.bool, device=device)
        return actions, B, T, present

    def _with_null(self, y: Tensor, present: Tensor) -> Tensor:
        """Samples with no modality present get the learned null embedding (B, T, d)."""
        none = ~present.any(dim=1)
        if not none.any():
            return y
        B, T, d = y.shape
        return torch.where(none[:, None, None], self.null_embedding[:T][None].expand(B, T, d), y)

    def _encode_modalities(self, actions: dict, present: Tensor, B: int, T: int) -> Tensor:
        """Per-modality experts + projections on the present rows -> z (B, T, M, d), zeros where absent."""
        d, dtype = self.cfg.feature_dim, self.dtype
        device = present.device
        step_emb = self.step_embedding[:T]  # (T, hidden)
        slots = []
        for i, name in enumerate(self.cfg.modalities):
            full = torch.zeros(B, T, d, device=device, dtype=dtype)
            mask = present[:, i]
            if mask.any():
                idx = mask.nonzero().squeeze(1)  # (n,)
                a = actions[name].to(device=device, dtype=dtype).index_select(0, idx)  # (n, T, *shape)
                n = a.shape[0]
                h = self.experts[name](a.reshape(n * T, -1))  # (n*T, hidden)
                h = (h.view(n, T, -1) + step_emb).reshape(n * T, -1)
                full = full.index_copy(0, idx, self.projections[name](h).view(n, T, d))
            slots.append(full)
        return torch.stack(slots, dim=2)  # (B, T, M, d)

    def _output(self, y: Tensor, present: Tensor, aux: Tensor, features: Tensor | None) -> ActionEncoderOutput:
        y = self._with_null(y, present)
        feats = None
        if features is not None:
            feats = {name: features[:, :, i] for i, name in enumerate(self.cfg.modalities)}
        return ActionEncoderOutput(interaction=y, fused=y, modality_features=feats, fusion_weights=None,
                                   ssl_loss=aux, norm_loss=None)


# ----------------------------------------------------------------------------------------------
# MUTEX
# ----------------------------------------------------------------------------------------------
@config_init(MutexConfig)
class MutexActionEncoder(_BaselineEncoder):
    """MUTEX-style masked cross-modal modelling + L2 matching to frame features (see module doc)."""

    def __init__(self, cfg: MutexConfig):
        super().__init__()
        self._init_common(cfg)
        d, hid, expert_layers, expert_dropout = cfg.feature_dim, cfg.expert_hidden, cfg.expert_layers, cfg.expert_dropout
        projection_dims, transformer_heads, transformer_layers = cfg.projection_dims, cfg.transformer_heads, cfg.transformer_layers
        self.experts = nn.ModuleDict({m: ModalityExpert(MODALITIES[m].size, hid, expert_layers, expert_dropout)
                                      for m in self.cfg.modalities})  # fmt: skip
        self.projections = nn.ModuleDict({m: ProjectionHead(hid, d, projection_dims) for m in self.cfg.modalities})
        self.modality_embedding = nn.Parameter(torch.randn(len(self.cfg.modalities), d) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, transformer_heads, dim_feedforward=2 * d, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, transformer_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.mask_prob = cfg.mask_prob

    def _training_mask(self, present: Tensor) -> Tensor:
        """(B, M) modalities to mask: each present one with ``mask_prob``, at least one kept visible."""
        if not self.training or self.mask_prob == 0:
            return torch.zeros_like(present)
        masked = (torch.rand(present.shape, device=present.device) < self.mask_prob) & present
        all_masked = present.any(1) & ~(present & ~masked).any(1)  # (B,)
        if all_masked.any():  # unmask one random present modality of those samples
            keep = torch.multinomial(present[all_masked].float(), 1).squeeze(1)
            masked[all_masked.nonzero().squeeze(1), keep] = False
        return masked

    def forward(self, actions, context_features, action_mask=None, text_features=None, target_features=None,
                num_steps=None) -> ActionEncoderOutput:
        actions, B, T, present = self._prepare(actions, context_features, action_mask, text_features,
                                               target_features, num_steps)
        z = self._encode_modalities(actions, present, B, T)  # (B, T, M, d)
        masked = self._training_mask(present)  # (B, M)
        visible = present & ~masked
        tokens = torch.where(masked[:, None, :, None], self.mask_token.to(z.dtype), z) + self.modality_embedding
        seq = rearrange(tokens, "b t m d -> (b t) m d")
        # Missing modalities are not tokens at all; rows with nothing present attend to everything (their
        # output is replaced by the null embedding) so that attention never normalises over an empty set.
        pad = torch.where(present.any(1, keepdim=True), ~present, torch.zeros_like(present))  # (B, M)
        out = self.out_norm(self.transformer(seq, src_key_padding_mask=pad.repeat_interleave(T, dim=0)))
        out = rearrange(out, "(b t) m d -> b t m d", b=B)

        w = visible[:, None, :, None].to(out.dtype)  # (B, 1, M, 1)
        y = (out * w).sum(2) / w.sum(2).clamp_min(1.0)  # (B, T, d): mean of the visible outputs

        aux = out.new_zeros(())
        if masked.any():  # masked modelling: predict the masked modalities' own features
            sel = masked[:, None, :].expand(B, T, -1)  # (B, T, M)
            aux = aux + F.mse_loss(out[sel], z.detach()[sel])
        if target_features is not None and present.any():  # cross-modal matching to the frame features
            rows = present.any(1)
            aux = aux + F.mse_loss(y[rows], target_features.detach().to(y.dtype)[rows])
        return self._output(y, present, aux, z)


# ----------------------------------------------------------------------------------------------
# ImageBind / LanguageBind
# ----------------------------------------------------------------------------------------------
class _BindEncoder(_BaselineEncoder):
    """Per-modality encoders into a shared normalised space; composition = sum of the embeddings."""

    def _build_bind(self, cfg: BindConfig):
        self._init_common(cfg)
        hid = cfg.expert_hidden
        self.experts = nn.ModuleDict({m: ModalityExpert(MODALITIES[m].size, hid, cfg.expert_layers, cfg.expert_dropout)
                                      for m in cfg.modalities})  # fmt: skip
        self.projections = nn.ModuleDict({m: ProjectionHead(hid, cfg.feature_dim, cfg.projection_dims)
                                          for m in cfg.modalities})  # fmt: skip
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))

    def _scale(self) -> Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()  # CLIP's cap

    def _embed(self, actions, present, B, T) -> tuple[Tensor, Tensor]:
        """Normalised embeddings e (B, T, M, d) (zeros where absent) and the composition y (B, T, d)."""
        z = self._encode_modalities(actions, present, B, T)
        e = F.normalize(z, dim=-1) * present[:, None, :, None].to(z.dtype)
        y = e.sum(2) * math.sqrt(self.cfg.feature_dim)
        return e, y


@config_init(BindConfig)
class ImageBindActionEncoder(_BindEncoder):
    """ImageBind-style InfoNCE binding of each modality to the frame features (see module doc)."""

    def __init__(self, cfg: BindConfig):
        super().__init__()
        self._build_bind(cfg)

    def forward(self, actions, context_features, action_mask=None, text_features=None, target_features=None,
                num_steps=None) -> ActionEncoderOutput:
        actions, B, T, present = self._prepare(actions, context_features, action_mask, text_features,
                                               target_features, num_steps)
        e, y = self._embed(actions, present, B, T)
        aux = y.new_zeros(())
        if target_features is not None:
            img = F.normalize(target_features.detach().to(e.dtype), dim=-1)  # (B, T, d), the frozen side
            terms = []
            for i in range(len(self.cfg.modalities)):
                rows = present[:, i].nonzero().squeeze(1)
                if len(rows) < 2:
                    continue
                for t in range(T):  # negatives: the other clips at the same step
                    terms.append(info_nce(e[rows, t, i], img[rows, t], self._scale()))
            if terms:
                aux = torch.stack(terms).mean()
        return self._output(y, present, aux, e)


@config_init(LanguageBindConfig)
class LanguageBindActionEncoder(_BindEncoder):
    """LanguageBind-style InfoNCE binding of each modality to the clip description (see module doc)."""

    def __init__(self, cfg: LanguageBindConfig):
        super().__init__()
        self._build_bind(cfg)
        self.text_head = nn.Linear(cfg.text_dim, cfg.feature_dim)

    def forward(self, actions, context_features, action_mask=None, text_features=None, target_features=None,
                num_steps=None) -> ActionEncoderOutput:
        actions, B, T, present = self._prepare(actions, context_features, action_mask, text_features,
                                               target_features, num_steps)
        e, y = self._embed(actions, present, B, T)  # text never enters the conditioning
        aux = y.new_zeros(())
        has_text = self._present(TEXT, text_features is not None, action_mask, B, present.device)
        if self.training and text_features is not None:
            text = F.normalize(self.text_head(text_features.detach().to(e.dtype)), dim=-1)  # (B, d)
            same = torch.cdist(text_features.float(), text_features.float()) < 1e-6  # same description
            terms = []
            for i in range(len(self.cfg.modalities)):
                rows = (present[:, i] & has_text).nonzero().squeeze(1)
                if len(rows) < 2:
                    continue
                clip = F.normalize(e[rows, :, i].mean(1), dim=-1)  # (n, d) clip embedding of modality i
                terms.append(info_nce(clip, text[rows], self._scale(), positives=same[rows][:, rows]))
            if terms:
                aux = torch.stack(terms).mean()
        return self._output(y, present, aux, e)


# ----------------------------------------------------------------------------------------------
# Signal-agnostic neural field
# ----------------------------------------------------------------------------------------------
def _channel_coordinates(shape: tuple[int, ...]) -> Tensor:
    """(size, 3) coordinates in [0, 1] of every channel of a modality: its multi-index, each axis scaled to
    [0, 1], padded with zeros to 3 axes (hand_force (2, 32, 32) -> (hand, row, column))."""
    axes = [torch.linspace(0, 1, n) if n > 1 else torch.zeros(1) for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))
    return F.pad(grid, (0, 3 - len(shape)))


@config_init(SignalAgnosticConfig)
class SignalAgnosticActionEncoder(_BaselineEncoder):
    """One shared neural-field encoder/decoder over all signals as a point set (see module doc)."""

    def __init__(self, cfg: SignalAgnosticConfig):
        super().__init__()
        self._init_common(cfg)
        expert_hidden, feature_dim, projection_dims = cfg.expert_hidden, cfg.feature_dim, cfg.projection_dims
        point_hidden, fourier_bands, num_queries, tag_dim = cfg.point_hidden, cfg.fourier_bands, cfg.num_queries, cfg.tag_dim
        recon_points = cfg.recon_points
        mods = self.cfg.modalities
        coords = torch.cat([_channel_coordinates(MODALITIES[m].shape) for m in mods])  # (P, 3)
        owner = torch.cat([torch.full((MODALITIES[m].size,), i) for i, m in enumerate(mods)])  # (P,)
        self.register_buffer("coords", coords, persistent=False)
        self.register_buffer("owner", owner, persistent=False)
        self.register_buffer("freqs", (2.0 ** torch.arange(fourier_bands)) * math.pi, persistent=False)
        coord_dim = 3 * 2 * fourier_bands + 3
        self.tag = nn.Embedding(len(mods), tag_dim)  # which kind of signal a point is: no expert per kind
        # Point network phi(gamma(coord), tag, value): the first layer splits into a per-point constant
        # (coordinate + tag) and the value times a vector, so the (rows x points) input is never built.
        self.point_in = nn.Linear(coord_dim + tag_dim, point_hidden)
        self.value_in = nn.Linear(1, point_hidden, bias=False)
        self.point_mlp = nn.Sequential(nn.GELU(), nn.Linear(point_hidden, point_hidden), nn.GELU())
        self.point_value = nn.Linear(point_hidden, expert_hidden // num_queries)
        self.point_logits = nn.Linear(point_hidden, num_queries)  # attention pooling, one query per head
        self.latent_norm = nn.LayerNorm(expert_hidden)
        self.projection = ProjectionHead(expert_hidden, feature_dim, projection_dims)
        # Shared field decoder: (latent, gamma(coord), tag) -> value.
        self.decoder = nn.Sequential(
            nn.Linear(expert_hidden + coord_dim + tag_dim, point_hidden), nn.GELU(),
            nn.Linear(point_hidden, point_hidden), nn.GELU(), nn.Linear(point_hidden, 1),
        )  # fmt: skip
        self.recon_points = recon_points
        self.num_queries = num_queries

    def _point_code(self, index: Tensor | None = None) -> Tensor:
        """(P or len(index), coord_dim + tag_dim): Fourier features of the coordinates and the tag."""
        coords, owner = (self.coords, self.owner) if index is None else (self.coords[index], self.owner[index])
        ang = coords[..., None] * self.freqs  # (P, 3, bands)
        gamma = torch.cat([coords, ang.sin().flatten(1), ang.cos().flatten(1)], dim=1)
        return torch.cat([gamma, self.tag(owner)], dim=1).to(self.dtype)

    def _values(self, actions, present, B, T) -> Tensor:
        """All channels of one step as (B, T, P) values in the configured modality order (0 where absent)."""
        parts = []
        for i, m in enumerate(self.cfg.modalities):
            if m in actions:
                v = actions[m].to(device=present.device, dtype=self.dtype).reshape(B, T, -1)
                v = v * present[:, i, None, None].to(v.dtype)
            else:
                v = torch.zeros(B, T, MODALITIES[m].size, device=present.device, dtype=self.dtype)
            parts.append(v)
        return torch.cat(parts, dim=2)

    def forward(self, actions, context_features, action_mask=None, text_features=None, target_features=None,
                num_steps=None) -> ActionEncoderOutput:
        actions, B, T, present = self._prepare(actions, context_features, action_mask, text_features,
                                               target_features, num_steps)
        d = self.cfg.feature_dim
        rows = present.any(1)  # samples with at least one modality (the rest get the null embedding)
        y = torch.zeros(B, T, d, device=present.device, dtype=self.dtype)
        aux = y.new_zeros(())
        if rows.any():
            idx = rows.nonzero().squeeze(1)
            pres = present.index_select(0, idx)  # (n, M)
            n = len(idx)
            values = self._values(actions, present, B, T).index_select(0, idx)  # (n, T, P)
            point_present = pres[:, self.owner]  # (n, P)

            # Encode: phi over every point of the set, then attention pooling over the present points.
            code = self.point_in(self._point_code())  # (P, hidden_p)
            h = code + values[..., None] * self.value_in.weight[:, 0]  # (n, T, P, hidden_p)
            h = self.point_mlp(h)
            logits = self.point_logits(h).masked_fill(~point_present[:, None, :, None], float("-inf"))
            attn = logits.softmax(dim=2)  # (n, T, P, Q): over the points of each step
            latent = torch.einsum("ntpq,ntpc->ntqc", attn, self.point_value(h))  # (n, T, Q, c)
            latent = self.latent_norm(rearrange(latent, "n t q c -> n t (q c)")) + self.step_embedding[:T]
            z = self.projection(latent.reshape(n * T, -1)).view(n, T, d)
            y = y.index_copy(0, idx, z)

            # Decode: the shared field reconstructs values at coordinates sampled per modality.
            per = max(1, self.recon_points // len(self.cfg.modalities))
            sample = []
            offset = 0
            for m in self.cfg.modalities:
                size = MODALITIES[m].size
                sample.append(offset + torch.randint(0, size, (min(per, size),), device=present.device))
                offset += size
            sample = torch.cat(sample)  # (R,)
            qcode = self._point_code(sample)  # (R, code)
            dec_in = torch.cat([latent[:, :, None, :].expand(-1, -1, len(sample), -1),
                                qcode[None, None].expand(n, T, -1, -1)], dim=-1)  # (n, T, R, hidden + code)
            pred = self.decoder(dec_in).squeeze(-1)  # (n, T, R)
            target = values[:, :, sample]
            w = point_present[:, sample][:, None, :].to(pred.dtype)  # (n, 1, R)
            # Each modality's sampled points weigh equally, whatever its channel count.
            aux = ((pred - target).pow(2) * w).sum() / (w.sum() * T).clamp_min(1.0)
        return self._output(y, present, aux, None)


# ----------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------
BASELINE_CLASSES = {
    "mutex": MutexActionEncoder,
    "imagebind": ImageBindActionEncoder,
    "languagebind": LanguageBindActionEncoder,
    "signal_agnostic": SignalAgnosticActionEncoder,
}


ACTION_ENCODER_CONFIGS = {
    "multisensory": ActionEncoderConfig,
    "mutex": MutexConfig,
    "imagebind": BindConfig,
    "languagebind": LanguageBindConfig,
    "signal_agnostic": SignalAgnosticConfig,
}
"""The typed config of each feature extractor, registered by name (``SimulatorConfig.feature_extractor``)."""


def action_encoder_config(feature_extractor: str, values: ActionEncoderConfig | dict) -> ActionEncoderConfig:
    """``values`` (a config or a dict of its fields) as the config class of ``feature_extractor``."""
    if feature_extractor not in ACTION_ENCODER_CONFIGS:
        raise ValueError(f"feature_extractor must be one of {list(ACTION_ENCODER_CONFIGS)}, got {feature_extractor!r}")
    config_class = ACTION_ENCODER_CONFIGS[feature_extractor]
    if isinstance(values, config_class) and type(values) is config_class:
        return values
    fields = values if isinstance(values, dict) else to_dict(values)
    known = set(config_class.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"action_encoder has no field {unknown[0]!r} for feature_extractor={feature_extractor!r}; "
                         f"fields are {sorted(known)}")
    return config_class(**fields)


def build_action_encoder(feature_extractor: str, cfg: ActionEncoderConfig) -> nn.Module:
    """The action encoder of ``feature_extractor`` (ours or a Table 2 baseline) built from ``cfg``."""
    cfg = action_encoder_config(feature_extractor, cfg)
    model_class = MultisensoryActionEncoder if feature_extractor == "multisensory" else BASELINE_CLASSES[feature_extractor]
    return model_class.from_config_object(cfg)


__all__ = [
    "ACTION_ENCODER_CONFIGS", "BASELINE_CLASSES", "FEATURE_EXTRACTORS", "action_encoder_config", "ImageBindActionEncoder", "LanguageBindActionEncoder",
    "MutexActionEncoder", "SignalAgnosticActionEncoder", "build_action_encoder", "info_nce",
]
