"""Modality experts ``E_m``, decoders ``D_m`` and projection heads ``P_m`` (paper §2.1, §7.4).

Paper sizes: each expert is a 4-layer MLP with GELU, hidden and output 128, dropout 0.1 and
batch-norm on the first two layers; each projection head is an MLP ``[128, 512, 768, d]`` with GELU
and batch-norm after the first layer. The decoder mirrors the expert (128 → 128 → 128 → input).

All three act on one time step at a time: inputs are ``(N, features)`` with N = present samples ×
steps. The caller selects the rows where a modality is present before calling them, so batch-norm
statistics only ever see real data.
"""

from __future__ import annotations

from torch import Tensor, nn


def _mlp(
    dims: tuple[int, ...],
    norm_layers: int,
    dropout: float,
    norm: str = "batch",
    final_activation: bool = False,
) -> nn.Sequential:
    """Linear → [norm] → GELU → [dropout] per layer; the last layer is linear unless asked otherwise.

    ``norm_layers``: how many of the first layers get a normalisation ("batch" or "layer").
    """
    layers: list[nn.Module] = []
    n = len(dims) - 1
    for i in range(n):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        last = i == n - 1
        if last and not final_activation:
            break
        if i < norm_layers:
            layers.append(nn.BatchNorm1d(dims[i + 1]) if norm == "batch" else nn.LayerNorm(dims[i + 1]))
        layers.append(nn.GELU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ModalityExpert(nn.Module):
    """``E_m``: one flattened step of modality m → a 128-d expert feature."""

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 4, dropout: float = 0.1, norm: str = "batch"):
        super().__init__()
        self.in_dim = in_dim
        self.net = _mlp((in_dim,) + (hidden,) * layers, norm_layers=2, dropout=dropout, norm=norm)

    def forward(self, x: Tensor) -> Tensor:  # (N, in_dim) -> (N, hidden)
        return self.net(x)


class ModalityDecoder(nn.Module):
    """``D_m``: expert feature → reconstruction of the flattened step (for ``L_ssl``)."""

    def __init__(self, out_dim: int, hidden: int = 128, layers: int = 3, dropout: float = 0.0):
        super().__init__()
        self.net = _mlp((hidden,) * layers + (out_dim,), norm_layers=1, dropout=dropout)

    def forward(self, h: Tensor) -> Tensor:  # (N, hidden) -> (N, out_dim)
        return self.net(h)


class ProjectionHead(nn.Module):
    """``P_m``: expert feature → the context-feature space R^d: MLP [in, 512, 768, d]."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dims: tuple[int, ...] = (512, 768), norm: str = "batch"):
        super().__init__()
        self.net = _mlp((in_dim, *hidden_dims, out_dim), norm_layers=1, dropout=0.0, norm=norm)

    def forward(self, h: Tensor) -> Tensor:  # (N, in_dim) -> (N, d)
        return self.net(h)
