"""Pixel metrics of ``mmsim_core.evaluation.metrics``: the torchmetrics-based PSNR / SSIM equal the documented
definitions written out by hand, and ``VideoMetrics`` gathers the same numbers however the clips are split."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmsim_core.evaluation import metrics as M


# ----------------------------------------------------------------------------------------------
# The documented definitions, written out (the formulas the project used before torchmetrics)
# ----------------------------------------------------------------------------------------------
def psnr_by_hand(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``10 log10(1 / MSE)`` per frame, data range 1, capped at PSNR_MAX: (B, N, 3, H, W) -> (B, N) float64."""
    mse = (pred.double() - target.double()).pow(2).mean(dim=(-3, -2, -1))
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-30))).clamp(max=M.PSNR_MAX)


def ssim_by_hand(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Wang et al. 2004 per frame: gaussian 11 / 1.5, K1 0.01, K2 0.03, data range 1, valid region only."""
    b, n, c, h, w = pred.shape
    x, y = pred.flatten(0, 1).double(), target.flatten(0, 1).double()
    g = torch.exp(-((torch.arange(window, dtype=torch.float64) - (window - 1) / 2) ** 2) / (2 * sigma**2))
    kernel = torch.outer(g / g.sum(), g / g.sum()).expand(c, 1, window, window)
    mu_x, mu_y, e_xx, e_yy, e_xy = F.conv2d(torch.cat([x, y, x * x, y * y, x * y]), kernel, groups=c).chunk(5)
    var_x, var_y, cov = e_xx - mu_x**2, e_yy - mu_y**2, e_xy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim.mean(dim=(1, 2, 3)).view(b, n)


def _random_pairs(shape=(3, 4, 64, 64, 3), seed=0):
    """uint8 targets and predictions at several noise levels (one per clip), as the models produce them."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, shape, dtype=np.uint8)
    noise = rng.normal(size=shape) * np.array([2.0, 20.0, 80.0])[: shape[0], None, None, None, None]
    pred = np.clip(target + noise, 0, 255).astype(np.uint8)
    return M.to_unit(pred), M.to_unit(target)


# ----------------------------------------------------------------------------------------------
# torchmetrics vs the definitions
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 4, 64, 64, 3), (2, 3, 40, 56, 3)])
def test_psnr_equals_the_formula(shape):
    p, t = _random_pairs(shape)
    ours, ref = M.frame_psnr(p, t), psnr_by_hand(p, t)
    assert ours.shape == shape[:2] and ours.dtype == torch.float32
    assert torch.allclose(ours.double(), ref, rtol=1e-6, atol=0)
    assert len(torch.unique(ours)) == ours.numel()  # distinct noise levels, distinct values: a real comparison


@pytest.mark.parametrize("shape", [(3, 4, 64, 64, 3), (2, 3, 40, 56, 3), (1, 2, 11, 11, 3)])
def test_ssim_equals_the_formula(shape):
    p, t = _random_pairs(shape, seed=1)
    ours, ref = M.frame_ssim(p, t), ssim_by_hand(p, t)
    assert ours.shape == shape[:2]
    assert torch.allclose(ours.double(), ref, rtol=0, atol=1e-6)


def test_ssim_border_is_left_out():
    """torchmetrics' own mean also averages the reflect-padded border: a different number, not used."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, t = _random_pairs((3, 4, 64, 64, 3), seed=1)
    padded_mean = structural_similarity_index_measure(p.flatten(0, 1).double(), t.flatten(0, 1).double(),
                                                      data_range=1.0, reduction="none").view(3, 4)
    assert float((padded_mean - ssim_by_hand(p, t)).abs().max()) > 1e-4
    assert torch.allclose(M.frame_ssim(p, t).double(), ssim_by_hand(p, t), atol=1e-6)


def test_ssim_matches_scipy_reference():
    """Against Wang et al.'s definition written out with scipy, channel by channel."""
    from scipy.ndimage import correlate

    g = torch.Generator().manual_seed(2)
    a = torch.rand(1, 2, 3, 40, 40, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    x = np.arange(11) - 5.0
    k1d = np.exp(-(x**2) / (2 * 1.5**2))
    k = np.outer(k1d, k1d) / np.outer(k1d, k1d).sum()

    def reference(p, t):
        vals = []
        for c in range(3):
            P, T = p[c].double().numpy(), t[c].double().numpy()
            f = lambda z: correlate(z, k, mode="constant")[5:-5, 5:-5]  # noqa: E731
            mp, mt = f(P), f(T)
            vp, vt, cov = f(P * P) - mp**2, f(T * T) - mt**2, f(P * T) - mp * mt
            c1, c2 = 0.01**2, 0.03**2
            vals.append((((2 * mp * mt + c1) * (2 * cov + c2)) / ((mp**2 + mt**2 + c1) * (vp + vt + c2))).mean())
        return np.mean(vals)

    ours = M.frame_ssim(b, a)
    for i in range(2):
        assert float(ours[0, i]) == pytest.approx(reference(b[0, i], a[0, i]), abs=1e-6)


# ----------------------------------------------------------------------------------------------
# Hand-made cases
# ----------------------------------------------------------------------------------------------
def test_identical_frames():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    p, t = M.to_unit(x), M.to_unit(x.copy())
    assert p.shape == (2, 3, 3, 32, 32) and float(p.max()) <= 1.0
    assert torch.equal(M.frame_mse(p, t), torch.zeros(2, 3))
    assert torch.equal(M.frame_psnr(p, t), torch.full((2, 3), M.PSNR_MAX))  # capped, never inf
    assert torch.allclose(M.frame_ssim(p, t), torch.ones(2, 3), atol=1e-5)


def test_known_noise_gives_known_psnr():
    target = torch.full((1, 2, 3, 16, 16), 0.5)
    sign = torch.where(torch.rand(target.shape, generator=torch.Generator().manual_seed(1)) < 0.5, -1.0, 1.0)
    pred = target + 0.1 * sign  # |error| = 0.1 everywhere: MSE 0.01, PSNR 20 dB
    assert torch.allclose(M.frame_mse(pred, target), torch.full((1, 2), 0.01), atol=1e-6)
    assert torch.allclose(M.frame_psnr(pred, target), torch.full((1, 2), 20.0), atol=1e-4)


def test_psnr_cap_only_touches_identical_frames():
    """One 8-bit step on one value of a 64x64 RGB frame: ~89 dB, finite and below the cap."""
    t = np.zeros((1, 1, 64, 64, 3), np.uint8)
    p = t.copy()
    p[0, 0, 10, 10, 1] = 1
    psnr = float(M.frame_psnr(M.to_unit(p), M.to_unit(t)))
    expected = 10 * np.log10(64 * 64 * 3 * 255**2)
    assert psnr == pytest.approx(expected, rel=1e-6) and 85 < psnr < M.PSNR_MAX


def test_ssim_orders_degradations():
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.random((1, 1, 3, 48, 48), dtype=np.float32))
    small = (base + 0.02 * torch.randn(base.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    large = (base + 0.3 * torch.randn(base.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    s_small, s_large = float(M.frame_ssim(small, base)), float(M.frame_ssim(large, base))
    assert 1.0 > s_small > s_large
    assert float(M.frame_ssim(base, large)) == pytest.approx(s_large, abs=1e-5)  # symmetric, as defined


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        M.frame_mse(torch.zeros(1, 2, 3, 8, 8), torch.zeros(1, 3, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 11x11"):
        M.frame_ssim(torch.zeros(1, 2, 3, 8, 8), torch.zeros(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="channels-last"):
        M.to_unit(np.zeros((2, 3, 8, 8), np.uint8))


def test_frame_scores_from_uint8():
    p, t = _random_pairs((2, 3, 32, 32, 3))
    pred, target = (x.movedim(-3, -1).mul(255).round().to(torch.uint8).numpy() for x in (p, t))
    scores = M.frame_scores(pred, target)
    assert set(scores) == {"mse", "psnr", "ssim"} and all(v.shape == (2, 3) for v in scores.values())
    assert torch.allclose(scores["psnr"].double(), psnr_by_hand(p, t), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# VideoMetrics: a torchmetrics Metric
# ----------------------------------------------------------------------------------------------
def _clips(n=6, seed=3):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, (n, 4, 16, 16, 3), dtype=np.uint8)
    pred = np.clip(target + rng.normal(size=target.shape) * rng.uniform(5, 60, (n, 1, 1, 1, 1)), 0, 255)
    return pred.astype(np.uint8), target


def test_video_metrics_summary():
    pred, target = _clips()
    m = M.VideoMetrics(unavailable={"lpips": "disabled"})
    m.update(pred[:4], target[:4], index=[10, 11, 12, 13])
    m.update(pred[4:], target[4:], index=[14, 15])
    assert m.num_clips == 6 and m.available == ["mse", "psnr", "ssim"]
    out = m.compute()
    psnr = psnr_by_hand(M.to_unit(pred), M.to_unit(target))  # (6, 4)
    assert out["num_clips"] == 6 and out["unavailable"] == {"lpips": "disabled"}
    assert out["metrics"]["psnr"] == pytest.approx(float(psnr.mean()), rel=1e-6)
    assert out["per_frame"]["psnr"] == pytest.approx(psnr.mean(0).tolist(), rel=1e-6)
    assert out["metrics_std"]["psnr"] == pytest.approx(float(psnr.mean(1).std(unbiased=False)), rel=1e-5)
    assert [r["index"] for r in out["per_clip"]] == [10, 11, 12, 13, 14, 15]
    assert [r["psnr"] for r in out["per_clip"]] == pytest.approx(psnr.mean(1).tolist(), rel=1e-6)
    assert m.running_mean("psnr") == pytest.approx(out["metrics"]["psnr"], rel=1e-9)
    with pytest.raises(ValueError, match="batch's 2 clips"):
        m.update(pred[:2], target[:2], index=[1])
    assert m.num_clips == 6  # a refused batch leaves the states as they were
    m.reset()
    assert m.num_clips == 0
    with pytest.raises(ValueError, match="no clips"), pytest.warns(UserWarning, match="before the ``update``"):
        m.compute()


def test_video_metrics_merge_equals_one_pass():
    """Clips split over two accumulators (as over two processes) give the same headline numbers."""
    pred, target = _clips()
    whole = M.VideoMetrics()
    whole.update(pred, target, index=range(6))
    a, b = M.VideoMetrics(), M.VideoMetrics()
    a.update(pred[:2], target[:2], index=range(2))
    b.update(pred[2:], target[2:], index=range(2, 6))
    a.merge_state(b)
    one, merged = whole.compute(), a.compute()
    assert merged["num_clips"] == 6
    for k in ("mse", "psnr", "ssim"):
        assert merged["metrics"][k] == pytest.approx(one["metrics"][k], rel=1e-12)
        assert merged["per_frame"][k] == pytest.approx(one["per_frame"][k], rel=1e-12)
    rows = {r["index"]: r for r in merged["per_clip"]}
    assert all(rows[r["index"]]["ssim"] == pytest.approx(r["ssim"], rel=1e-12) for r in one["per_clip"])


def _distributed_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    from mmsim_core.evaluation import metrics as M

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        pred, target = _clips()
        m = M.VideoMetrics()
        mine = list(range(rank, 6, world))  # a distributed sampler's share
        m.update(pred[mine], target[mine], index=mine)
        out = m.compute()  # gathers every rank's clips
        if rank == 0:
            queue.put(out)
    finally:
        dist.destroy_process_group()


def test_video_metrics_syncs_across_processes():
    """Two gloo processes, each with half the clips: compute() on either sees all six."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_distributed_worker, args=(2, port, queue), nprocs=2, join=True, start_method="spawn")
    out = queue.get()
    pred, target = _clips()
    single = M.VideoMetrics()
    single.update(pred, target, index=range(6))
    ref = single.compute()
    assert out["num_clips"] == 6 and sorted(r["index"] for r in out["per_clip"]) == list(range(6))
    for k in ("mse", "psnr", "ssim"):
        assert out["metrics"][k] == pytest.approx(ref["metrics"][k], rel=1e-12)
