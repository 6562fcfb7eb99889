"""Text encoders for the optional text modality (paper §7.4, §7.8.1): ``encode(list[str]) -> (B, text_dim)``.

- ``BagOfWordsTextEncoder``: the offline default. Words (lower-cased alphanumeric runs) and word
  bigrams are hashed with a stable hash (CRC32, not Python's salted ``hash``) into ``num_buckets``
  ids and averaged by a trainable ``nn.EmbeddingBag``. Bigrams let "open jar" and "jar open"
  differ. Trained with the model; saved inside the checkpoint.
- ``OpenCLIPTextEncoder``: the paper's frozen OpenCLIP text tower (ViT-H-14, ``laion2b_s32b_b79k``,
  1024-d), loaded like ``OpenCLIPContextEncoder``; absent weights raise a clear ``MMSimError``.

Both return an empty string's embedding as a finite vector (zeros for the bag of words).
"""

from __future__ import annotations

import os
import re
import zlib
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from mmsim_core.errors import ActionInputError
from mmsim_core.models.context_encoder import OPENCLIP_DEFAULT_MODEL, OPENCLIP_DEFAULT_PRETRAINED, load_open_clip

_WORD = re.compile(r"[a-z0-9]+")


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ActionInputError(f"text must be a list of strings (one per sample), got {type(texts).__name__}")
    return list(texts)


def tokenize_words(text: str) -> list[str]:
    """Lower-cased words plus ``"a_b"`` bigrams of neighbouring words."""
    words = _WORD.findall(text.lower())
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:])]


class BagOfWordsTextEncoder(ModelMixin, ConfigMixin):
    """Hashed words and bigrams → mean of trainable embeddings: list[str] → (B, text_dim)."""

    @register_to_config
    def __init__(self, text_dim: int = 64, num_buckets: int = 4096):
        super().__init__()
        if text_dim <= 0 or num_buckets <= 0:
            raise ValueError(f"text_dim and num_buckets must be positive, got {text_dim}, {num_buckets}")
        self.embedding = nn.EmbeddingBag(num_buckets, text_dim, mode="mean")
        nn.init.normal_(self.embedding.weight, std=text_dim**-0.5)

    @property
    def feature_dim(self) -> int:
        return self.config.text_dim

    def token_ids(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Flat bucket ids and per-text offsets for ``nn.EmbeddingBag``."""
        ids, offsets = [], []
        for t in _check_texts(texts):
            offsets.append(len(ids))
            ids.extend(zlib.crc32(tok.encode()) % self.config.num_buckets for tok in tokenize_words(t))
        dev = self.embedding.weight.device
        return torch.tensor(ids, dtype=torch.long, device=dev), torch.tensor(offsets, dtype=torch.long, device=dev)

    def encode(self, texts: Sequence[str]) -> Tensor:
        ids, offsets = self.token_ids(texts)
        return self.embedding(ids, offsets)  # (B, text_dim); zeros for a text without words

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.encode(texts)


class OpenCLIPTextEncoder(nn.Module):
    """Frozen OpenCLIP text tower: list[str] → (B, embed_dim) (1024 for ViT-H-14)."""

    def __init__(
        self,
        model_name: str = OPENCLIP_DEFAULT_MODEL,
        pretrained: str | os.PathLike = OPENCLIP_DEFAULT_PRETRAINED,
        normalize: bool = False,
    ):
        super().__init__()
        import open_clip

        model, _ = load_open_clip(model_name, pretrained, what="OpenCLIP text")
        model.visual = None  # only the text tower is needed; free the image tower
        self.model = model.eval().requires_grad_(False)
        self.model_name, self.pretrained, self.normalize = model_name, str(pretrained), normalize
        src = str(pretrained)
        if src.startswith("hf-hub:"):
            tok_name = src
        elif os.path.isdir(src):
            tok_name = f"local-dir:{src}"
        else:
            tok_name = model_name
        self.tokenizer = open_clip.get_tokenizer(tok_name)
        self.feature_dim = int(self.encode([""]).shape[-1])

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Tensor:
        tokens = self.tokenizer(_check_texts(texts)).to(next(self.model.parameters()).device)
        z = self.model.encode_text(tokens).float()  # (B, d)
        return F.normalize(z, dim=-1) if self.normalize else z

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.encode(texts)
