"""Video prediction metrics (paper §3): MSE, PSNR, SSIM, LPIPS, FVD and per-frame curves (Fig. 4).

Definitions (the standard ones, on frames scaled to [0, 1]):

* **MSE**  — mean squared error over the pixels and channels of one frame.
* **PSNR** — ``10 log10(1 / MSE)`` per frame (data range 1), computed by torchmetrics. Identical frames
  give +inf, which JSON cannot hold and which would make any mean infinite, so every per-frame PSNR is
  capped at ``PSNR_MAX = 100`` dB: far above the largest finite PSNR of two different 8-bit 64x64
  frames (one pixel off by 1/255 gives ~89 dB), so the cap only ever touches identical frames.
* **SSIM** — Wang et al. 2004: gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1, per
  frame, local statistics over the valid region (Wang's reference code, skimage). torchmetrics computes
  the SSIM map; its mean over the whole map would include the reflect-padded border (a ~1e-3 shift on
  64x64 frames), so the map is cropped to the valid region before averaging.
* **LPIPS** — Zhang et al. 2018 (the ``lpips`` package, v0.1 linear heads, AlexNet by default), per
  frame on [-1, 1] inputs. The linear heads ship inside the package but the backbone is torchvision's
  ImageNet network, which is only present if someone downloaded it. :func:`load_lpips` looks for it
  and raises :class:`MetricUnavailable` (with the reason) otherwise: LPIPS with a random backbone is
  not LPIPS and is never reported as such.
* **FVD** — Unterthiner et al. 2018: Fréchet distance between Gaussians fitted to the 400-d logits of
  the Kinetics-400 I3D network (the torchscript port used by StyleGAN-V, ``i3d_torchscript.pt``),
  videos resized to 224x224 and scaled to [-1, 1]. The weights come from ``--i3d PATH`` or the
  ``MMSIM_I3D_WEIGHTS`` environment variable; without them FVD is reported unavailable.

Every per-frame metric is averaged over frames and clips for the headline number; the per-frame curve
is the mean over clips at each future step (temporal drift). :class:`VideoMetrics` accumulates them as
a torchmetrics ``Metric``, so an evaluation split over processes gathers every clip before computing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.utilities import dim_zero_cat

from mmsim_core.errors import MMSimError

PSNR_MAX = 100.0
"""Cap on per-frame PSNR in dB (identical frames); see the module docstring."""
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
"""torchmetrics derives the gaussian window from sigma (``2 * int(3.5 sigma + 0.5) + 1`` = 11 for 1.5)."""

FRAME_METRICS = ("mse", "psnr", "ssim", "lpips")
LOWER_IS_BETTER = {"mse": True, "psnr": False, "ssim": False, "lpips": True, "fvd": True}

I3D_ENV = "MMSIM_I3D_WEIGHTS"
I3D_FILENAME = "i3d_torchscript.pt"
I3D_FEATURE_DIM = 400
I3D_RESOLUTION = 224
LPIPS_ENV = "MMSIM_LPIPS_BACKBONE"
# torchvision's file names for the ImageNet backbones the lpips package builds on.
LPIPS_BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


class MetricUnavailable(MMSimError):
    """A metric whose real pretrained weights cannot be found; the message says why and how to fix it."""


# ----------------------------------------------------------------------------------------------
# Frame conversion
# ----------------------------------------------------------------------------------------------
def to_unit(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) in [0, 255] or float (..., H, W, 3) in [0, 1] -> float32 (..., 3, H, W) in [0, 1]."""
    x = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if x.shape[-1] != 3:
        raise ValueError(f"frames must be channels-last RGB (..., H, W, 3), got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.movedim(-1, -3).contiguous()


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim != 5:
        raise ValueError(f"expected videos (B, N, 3, H, W), got shape {tuple(pred.shape)}")


# ----------------------------------------------------------------------------------------------
# Pixel metrics, per frame: inputs float (B, N, 3, H, W) in [0, 1], outputs float32 (B, N)
# ----------------------------------------------------------------------------------------------
def frame_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    _check_pair(pred, target)
    return (pred.double() - target.double()).pow(2).mean(dim=(-3, -2, -1)).float()  # (B, N)


def frame_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR per frame in dB (data range 1), capped at :data:`PSNR_MAX` (identical frames)."""
    _check_pair(pred, target)
    b, n = pred.shape[:2]
    psnr = peak_signal_noise_ratio(pred.flatten(0, 1).double(), target.flatten(0, 1).double(), data_range=1.0,
                                   reduction="none", dim=(1, 2, 3))  # (B*N,)
    return psnr.clamp(max=PSNR_MAX).view(b, n).float()


def frame_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per frame (Wang et al. 2004): gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1,
    the SSIM map over the valid region of each channel averaged over pixels and channels (as skimage's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``)."""
    _check_pair(pred, target)
    b, n, _, h, w = pred.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    _, ssim_map = structural_similarity_index_measure(
        pred.flatten(0, 1).float(), target.flatten(0, 1).float(), gaussian_kernel=True, sigma=SSIM_SIGMA,
        data_range=1.0, k1=0.01, k2=0.03, reduction="none", return_full_image=True,
    )  # (B*N, 3, H, W), over the reflect-padded input; float32: float64 falls back to a slow convolution
    pad = SSIM_WINDOW // 2
    valid = ssim_map[..., pad:h - pad, pad:w - pad]  # windows that lie wholly inside the frame
    return valid.mean(dim=(1, 2, 3)).view(b, n).float()


def frame_scores(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
    """MSE, PSNR and SSIM per frame of two videos, uint8 (B, N, H, W, 3) or float [0, 1]: {name: (B, N)}."""
    p, t = to_unit(pred), to_unit(target)  # (B, N, 3, H, W)
    return {"mse": frame_mse(p, t), "psnr": frame_psnr(p, t), "ssim": frame_ssim(p, t)}


# ----------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------
def _find_weights(path, env: str, filename: str, what: str) -> Path:
    """``path``, else ``$env`` (either must exist), else where the torch hub cache would hold ``filename``
    (which may not exist: the caller says what is missing)."""
    explicit = path or os.environ.get(env)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise MetricUnavailable(f"{what} {p} not found")
        return p
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def find_lpips_backbone(net: str = "alex", path: str | os.PathLike | None = None) -> Path:
    """The torchvision ImageNet weights LPIPS builds on: ``path``, else ``$MMSIM_LPIPS_BACKBONE``, else
    torchvision's download cache (``$TORCH_HOME/hub/checkpoints``). Raises :class:`MetricUnavailable`."""
    if net not in LPIPS_BACKBONE_FILES:
        raise ValueError(f"lpips net must be one of {sorted(LPIPS_BACKBONE_FILES)}, got {net!r}")
    cached = _find_weights(path, LPIPS_ENV, LPIPS_BACKBONE_FILES[net], "LPIPS backbone weights")
    if cached.is_file():
        return cached
    raise MetricUnavailable(
        f"LPIPS needs torchvision's pretrained {net} backbone ({LPIPS_BACKBONE_FILES[net]}), which is not in "
        f"the download cache {cached.parent} and cannot be downloaded offline; the lpips package only ships "
        f"the linear heads. Put the file there, or pass --lpips-backbone PATH / set {LPIPS_ENV}."
    )


class LPIPSMetric:
    """LPIPS (package ``lpips``, v0.1 heads) with the backbone loaded from a local torchvision file."""

    def __init__(self, net: str = "alex", backbone: str | os.PathLike | None = None, device="cpu"):
        import lpips

        self.net, self.device = net, torch.device(device)
        self.backbone_path = find_lpips_backbone(net, backbone)
        # pnet_rand builds the backbone without touching the network; real weights are copied in below.
        model = lpips.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False)
        try:
            state = torch.load(self.backbone_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file means the metric is unavailable
            raise MetricUnavailable(f"LPIPS backbone {self.backbone_path} cannot be read: {e}") from None
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise MetricUnavailable(f"{self.backbone_path} is not a state dict")
        # lpips splits torchvision's `features` Sequential into slices that keep the original indices,
        # so slice module "i" takes torchvision's "features.i.*" weights.
        loaded = 0
        for slice_ in (getattr(model.net, f"slice{i}") for i in range(1, model.net.N_slices + 1)):
            for idx, module in slice_.named_children():
                own = module.state_dict()
                if not own:
                    continue
                sub = {k: state.get(f"features.{idx}.{k}") for k in own}
                bad = [k for k, v in sub.items() if not isinstance(v, torch.Tensor) or v.shape != own[k].shape]
                if bad:
                    raise MetricUnavailable(
                        f"{self.backbone_path} is not a torchvision {net} checkpoint: 'features.{idx}.{bad[0]}' "
                        f"is missing or has the wrong shape (expected {tuple(own[bad[0]].shape)})"
                    )
                module.load_state_dict(sub)
                loaded += len(sub)
        self.num_backbone_tensors = loaded
        self.model = model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) in [0, 1] -> (B, N)."""
        _check_pair(pred, target)
        b, n = pred.shape[:2]
        p = pred.flatten(0, 1).to(self.device) * 2 - 1
        t = target.flatten(0, 1).to(self.device) * 2 - 1
        return self.model(p, t).view(b, n).float().cpu()

    def describe(self) -> dict:
        return {"net": self.net, "version": "0.1", "backbone": str(self.backbone_path)}


def load_lpips(net: str = "alex", backbone: str | os.PathLike | None = None, device="cpu") -> LPIPSMetric:
    return LPIPSMetric(net=net, backbone=backbone, device=device)


# ----------------------------------------------------------------------------------------------
# FVD
# ----------------------------------------------------------------------------------------------
def find_i3d(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$MMSIM_I3D_WEIGHTS``, else ``i3d_torchscript.pt`` in the torch hub cache."""
    cached = _find_weights(path, I3D_ENV, I3D_FILENAME, "I3D weights")
    if cached.is_file():
        return cached
    raise MetricUnavailable(
        f"FVD needs the Kinetics-400 I3D network as torchscript ({I3D_FILENAME}, as used by StyleGAN-V), "
        f"which cannot be downloaded offline; pass --i3d PATH or set {I3D_ENV}."
    )


def preprocess_for_i3d(videos: torch.Tensor, resolution: int = I3D_RESOLUTION) -> torch.Tensor:
    """(B, T, 3, H, W) in [0, 1] -> (B, 3, T, R, R) in [-1, 1]: shorter side scaled to R, centre crop."""
    b, t, c, h, w = videos.shape
    scale = resolution / min(h, w)
    size = (max(resolution, round(h * scale)), max(resolution, round(w * scale)))
    x = F.interpolate(videos.flatten(0, 1).float(), size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    x = x[..., top:top + resolution, left:left + resolution]
    x = x.view(b, t, c, resolution, resolution).permute(0, 2, 1, 3, 4)  # (B, 3, T, R, R)
    return (x * 2 - 1).contiguous()


class I3DFeatures:
    """400-d I3D logits of videos, from a torchscript file called as
    ``model(x, rescale=False, resize=False, return_features=True)`` (the StyleGAN-V convention)."""

    def __init__(self, path: str | os.PathLike | None = None, device="cpu"):
        self.path = find_i3d(path)
        self.device = torch.device(device)
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as e:  # noqa: BLE001
            raise MetricUnavailable(f"I3D weights {self.path} cannot be loaded as torchscript: {e}") from None

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [0, 1] -> (B, 400) float64."""
        x = preprocess_for_i3d(videos).to(self.device)
        feats = self.model(x, rescale=False, resize=False, return_features=True)
        if feats.ndim != 2 or feats.shape != (videos.shape[0], I3D_FEATURE_DIM):
            raise MetricUnavailable(
                f"{self.path} returned features of shape {tuple(feats.shape)}, expected "
                f"({videos.shape[0]}, {I3D_FEATURE_DIM}): not the Kinetics-400 I3D used for FVD"
            )
        return feats.double().cpu()

    def describe(self) -> dict:
        return {"i3d": str(self.path), "resolution": I3D_RESOLUTION, "features": I3D_FEATURE_DIM}


def load_i3d(path: str | os.PathLike | None = None, device="cpu") -> I3DFeatures:
    return I3DFeatures(path, device=device)


def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors (N, D), got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``‖mu1 - mu2‖² + Tr(S1 + S2 - 2 (S1 S2)^½)`` between two Gaussians."""
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"mismatched Gaussian shapes: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        # Singular product (few samples): regularise as in the reference FID implementation.
        eps = np.eye(len(mu1)) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


def fvd_from_features(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


# ----------------------------------------------------------------------------------------------
# Accumulation over a dataset
# ----------------------------------------------------------------------------------------------
class VideoMetrics(Metric):
    """Per-frame metrics and I3D features accumulated over batches of clips.

    Every state is a list of per-batch tensors gathered with ``cat`` across processes, so ``compute``
    sees every clip of a distributed evaluation. ``lpips`` / ``i3d`` are loaded metric objects, or
    ``None`` with the reason in ``unavailable``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, lpips: LPIPSMetric | None = None, i3d: I3DFeatures | None = None,
                 unavailable: Mapping[str, str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.lpips, self.i3d = lpips, i3d
        self.unavailable = dict(unavailable or {})
        for name in FRAME_METRICS:
            self.add_state(f"{name}_per_frame", default=[], dist_reduce_fx="cat")  # [(B, F)]
        self.add_state("clip_index", default=[], dist_reduce_fx="cat")  # [(B,)], -1 where not given
        self.add_state("real_features", default=[], dist_reduce_fx="cat")  # [(B, 400)]
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    @classmethod
    def create(cls, lpips_net: str | None = "alex", lpips_backbone=None, i3d=None, device="cpu",
               fvd: bool = True, **kwargs) -> "VideoMetrics":
        """Load LPIPS and I3D when their real weights are present; otherwise record why not.
        ``lpips_net=None`` / ``fvd=False`` skip those metrics."""
        unavailable, lp, det = {}, None, None
        if lpips_net is None:
            unavailable["lpips"] = "disabled (--no-lpips)"
        else:
            try:
                lp = load_lpips(lpips_net, lpips_backbone, device=device)
            except MetricUnavailable as e:
                unavailable["lpips"] = str(e)
        if not fvd:
            unavailable["fvd"] = "disabled"
        else:
            try:
                det = load_i3d(i3d, device=device)
            except MetricUnavailable as e:
                unavailable["fvd"] = str(e)
        return cls(lpips=lp, i3d=det, unavailable=unavailable, **kwargs)

    @property
    def available(self) -> list[str]:
        names = ["mse", "psnr", "ssim"] + (["lpips"] if self.lpips is not None else [])
        return names + (["fvd"] if self.i3d is not None else [])

    def _frame_states(self) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        # A state is a list of batches here, one tensor once synchronised across processes.
        return {k: getattr(self, f"{k}_per_frame") for k in FRAME_METRICS if len(getattr(self, f"{k}_per_frame"))}

    def update(self, pred, target, context=None, index: Sequence[int] | None = None) -> None:
        """Add a batch. ``pred``/``target``: future frames uint8 (B, F, H, W, 3) (or float [0,1]);
        ``context`` (B, h, H, W, 3): prepended to both videos for FVD (I3D needs >= ~10 frames);
        ``index``: the clips' dataset indices, kept for the per-clip rows."""
        values = frame_scores(pred, target)  # checks the shapes before any state changes
        p, t = to_unit(pred), to_unit(target)  # (B, F, 3, H, W)
        idx = torch.full((p.shape[0],), -1, dtype=torch.long) if index is None else torch.as_tensor(list(index))
        if idx.shape != (p.shape[0],):
            raise ValueError(f"index must name the batch's {p.shape[0]} clips, got {tuple(idx.shape)} values")
        if self.lpips is not None:
            values["lpips"] = self.lpips(p, t)
        for k, v in values.items():
            getattr(self, f"{k}_per_frame").append(v.detach().double().cpu())
        self.clip_index.append(idx.long())
        if self.i3d is not None:
            real, fake = t, p
            if context is not None:
                c = to_unit(context)
                real, fake = torch.cat([c, t], dim=1), torch.cat([c, p], dim=1)  # (B, h+F, 3, H, W)
            try:
                real_feats, fake_feats = self.i3d(real), self.i3d(fake)
            except MetricUnavailable as e:
                self.unavailable["fvd"] = str(e)
                self.i3d = None
                self.real_features, self.fake_features = [], []
            else:
                self.real_features.append(real_feats)
                self.fake_features.append(fake_feats)

    def running_mean(self, name: str) -> float:
        """Mean of one per-frame metric over the clips added so far in this process (for progress bars)."""
        return float(dim_zero_cat(getattr(self, f"{name}_per_frame")).mean())

    @property
    def num_clips(self) -> int:
        return len(dim_zero_cat(self.clip_index)) if len(self.clip_index) else 0

    def compute(self) -> dict:
        """{"metrics": {name: mean}, "metrics_std": {name: std over clips}, "per_frame": {name: [F]},
        "per_clip": [{"index", name: mean}], "unavailable": {name: reason}, "num_clips": N}."""
        states = self._frame_states()
        if not states:
            raise ValueError("no clips were evaluated")
        metrics, std, curves = {}, {}, {}
        per_clip_values = {}
        for k, chunks in states.items():
            v = dim_zero_cat(chunks).double()  # (N, F)
            metrics[k] = float(v.mean())
            per_clip_values[k] = v.mean(dim=1)  # (N,)
            std[k] = float(per_clip_values[k].std(unbiased=False))
            curves[k] = [float(x) for x in v.mean(dim=0)]
        index = dim_zero_cat(self.clip_index)
        per_clip = []
        for i, clip in enumerate(index.tolist()):
            row = {"index": clip} if clip >= 0 else {}
            per_clip.append({**row, **{k: float(v[i]) for k, v in per_clip_values.items()}})
        unavailable = dict(self.unavailable)
        if self.i3d is not None:
            real, fake = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
            if len(real) < 2:
                unavailable["fvd"] = f"FVD needs at least 2 clips to fit covariances, got {len(real)}"
            else:
                metrics["fvd"] = fvd_from_features(real.numpy(), fake.numpy())
        return {"metrics": metrics, "metrics_std": std, "per_frame": curves, "per_clip": per_clip,
                "unavailable": unavailable, "num_clips": len(per_clip)}


__all__ = [
    "PSNR_MAX", "SSIM_SIGMA", "SSIM_WINDOW", "FRAME_METRICS", "LOWER_IS_BETTER", "MetricUnavailable", "to_unit",
    "frame_mse", "frame_psnr", "frame_ssim", "frame_scores", "find_lpips_backbone", "LPIPSMetric", "load_lpips",
    "find_i3d", "preprocess_for_i3d", "I3DFeatures", "load_i3d", "gaussian_stats", "frechet_distance",
    "fvd_from_features", "VideoMetrics",
]
