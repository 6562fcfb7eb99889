"""The Fréchet distance, the LPIPS / FVD loading paths, and `mmsim evaluate` end to end (pixel metric values:
test_evaluation_metrics.py)."""

import json

import numpy as np
import pytest
import torch

from mmsim_core.evaluation import metrics as M
from mmsim.training.evaluate import main


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def setup(tiny_setup):
    return tiny_setup


@pytest.fixture
def offline_weights(tmp_path, monkeypatch):
    """No LPIPS backbone and no I3D anywhere: an empty torch hub cache and no env overrides."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(M.I3D_ENV, raising=False)
    monkeypatch.delenv(M.LPIPS_ENV, raising=False)


class I3DStandIn(torch.nn.Module):
    """Test-only module with the I3D torchscript calling convention and a 400-d output. It exercises
    the FVD code path; it is NOT I3D and no result computed with it is an FVD."""

    def __init__(self, dim: int = M.I3D_FEATURE_DIM):
        super().__init__()
        self.proj = torch.nn.Linear(12, dim)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if x.shape[1] != 3 or x.shape[3] != 224 or x.shape[4] != 224:
            raise RuntimeError("expected (B, 3, T, 224, 224)")
        if bool(x.min() < -1.0) or bool(x.max() > 1.0):
            raise RuntimeError("expected values in [-1, 1]")
        stats = [x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4)), x.amin(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))]
        return self.proj(torch.cat(stats, dim=1))  # (B, 400)


def _save_standin(path, dim=M.I3D_FEATURE_DIM):
    torch.manual_seed(0)
    torch.jit.script(I3DStandIn(dim)).save(str(path))
    return path


def _alexnet_features_file(path):
    """A torchvision-format AlexNet state dict (random values) to exercise the LPIPS loading path."""
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    g = torch.Generator().manual_seed(0)
    state = {}
    for i, s in shapes.items():
        state[f"features.{i}.weight"] = torch.randn(s, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.randn(s[0], generator=g) * 0.05
    torch.save(state, path)
    return path, state


# ----------------------------------------------------------------------------------------------
# FVD's Fréchet distance
# ----------------------------------------------------------------------------------------------
def test_frechet_distance_on_gaussians():
    mu, sigma = np.array([1.0, -2.0, 0.5]), np.diag([1.0, 2.0, 3.0])
    assert M.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    # Diagonal covariances: |mu1-mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    mu2, sigma2 = np.array([2.0, -2.0, 0.5]), np.diag([4.0, 2.0, 12.0])
    expected = 1.0 + (1 - 2) ** 2 + 0 + (np.sqrt(3) - np.sqrt(12)) ** 2
    assert M.frechet_distance(mu, sigma, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    # From features: identical sets -> 0; a shifted set -> the shift squared.
    feats = np.random.default_rng(0).normal(size=(64, 5))
    assert M.fvd_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)
    assert M.fvd_from_features(feats, feats + 2.0) == pytest.approx(5 * 4.0, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        M.gaussian_stats(feats[:1])


# ----------------------------------------------------------------------------------------------
# LPIPS and FVD: only with real weights; loading paths exercised with small files made here
# ----------------------------------------------------------------------------------------------
def test_lpips_and_fvd_unavailable_offline(offline_weights):
    m = M.VideoMetrics.create()
    assert m.lpips is None and m.i3d is None
    assert "alexnet-owt-7be5be79.pth" in m.unavailable["lpips"] and "--lpips-backbone" in m.unavailable["lpips"]
    assert "--i3d" in m.unavailable["fvd"] and M.I3D_ENV in m.unavailable["fvd"]
    x = np.zeros((2, 8, 16, 16, 3), np.uint8)
    m.update(x, x)
    out = m.compute()
    assert set(out["metrics"]) == {"mse", "psnr", "ssim"} and set(out["unavailable"]) == {"lpips", "fvd"}


def test_lpips_backbone_loading_path(tmp_path, offline_weights):
    path, state = _alexnet_features_file(tmp_path / "alexnet.pth")
    lp = M.load_lpips("alex", backbone=path)
    assert lp.num_backbone_tensors == 10
    assert torch.equal(getattr(lp.model.net.slice1, "0").weight, state["features.0.weight"])  # our weights, not random ones
    assert torch.equal(getattr(lp.model.net.slice5, "10").bias, state["features.10.bias"])
    x = torch.rand(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(lp(x, x), torch.zeros(1, 2), atol=1e-6)
    assert float(lp(x, 1 - x).min()) > 0
    # The cache location and the environment variable are searched too.
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    path.rename(cache / M.LPIPS_BACKBONE_FILES["alex"])
    assert M.find_lpips_backbone("alex") == cache / M.LPIPS_BACKBONE_FILES["alex"]
    # A file that is not an AlexNet checkpoint is refused with the reason.
    torch.save({"features.0.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pth")
    with pytest.raises(M.MetricUnavailable, match="not a torchvision alex checkpoint"):
        M.load_lpips("alex", backbone=tmp_path / "wrong.pth")
    with pytest.raises(M.MetricUnavailable, match="not found"):
        M.load_lpips("alex", backbone=tmp_path / "missing.pth")


def test_fvd_code_path_with_i3d_shaped_standin(tmp_path, offline_weights, monkeypatch):
    path = _save_standin(tmp_path / "i3d_standin.pt")
    monkeypatch.setenv(M.I3D_ENV, str(path))
    m = M.VideoMetrics.create(lpips_net=None)
    assert m.i3d is not None and "fvd" not in m.unavailable
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, (3, 4, 16, 16, 3), dtype=np.uint8)
    real = rng.integers(0, 256, (3, 8, 16, 16, 3), dtype=np.uint8)
    m.update(real, real, context=ctx)
    assert m.compute()["metrics"]["fvd"] == pytest.approx(0.0, abs=1e-6)
    m2 = M.VideoMetrics.create(lpips_net=None)
    m2.update(np.zeros_like(real), real, context=ctx)
    assert m2.compute()["metrics"]["fvd"] > 0
    # A network with the wrong output size is not the I3D of FVD: reported unavailable, not computed.
    monkeypatch.setenv(M.I3D_ENV, str(_save_standin(tmp_path / "wrong.pt", dim=10)))
    m3 = M.VideoMetrics.create(lpips_net=None)
    m3.update(real, real, context=ctx)
    out = m3.compute()
    assert "fvd" not in out["metrics"] and "expected (3, 400)" in out["unavailable"]["fvd"]


# ----------------------------------------------------------------------------------------------
# mmsim evaluate
# ----------------------------------------------------------------------------------------------
def _run(args) -> int:
    return main([str(a) for a in args])


def _md_rows(md: str) -> list[list[str]]:
    """Cells of the first Markdown table in ``md`` (header first, the alignment row left out)."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not all(set(c) <= set(":-") for c in cells):
            rows.append(cells)
    return rows


def test_evaluate_drop_writes_json_md_html(setup, tmp_path, offline_weights):
    out = tmp_path / "res" / "drop.json"
    rc = _run([setup["ckpt"], setup["data"], "--split", "test", "--out", out, "--drop", "emg", "hand_force",
               "--limit", "3", "--batch-size", "2", "--num-inference-steps", "1", "--seed", "3"])
    assert rc == 0
    r = json.loads(out.read_text())
    s = r["settings"]
    assert s["modalities_used"] == ["hand_pose", "body_pose"] and s["drop"] == ["emg", "hand_force"]
    assert s["num_inference_steps"] == 1 and s["seed"] == 3 and s["split"] == "test"
    assert r["num_clips"] == 3 and len(r["per_clip"]) == 3
    for k in ("mse", "psnr", "ssim"):
        assert np.isfinite(r["metrics"][k]) and len(r["per_frame"][k]) == 8
        assert r["metrics"][k] == pytest.approx(np.mean(r["per_frame"][k]), rel=1e-6)
    assert set(r["unavailable"]) == {"lpips", "fvd"} and "lpips" not in r["metrics"]
    md = (tmp_path / "res" / "drop.md").read_text()
    assert "Unavailable metrics" in md and "Per-frame curves" in md
    header, row = _md_rows(md)[:2]
    assert header == ["Method", "Clips", "MSE ↓", "PSNR ↑", "SSIM ↑", "LPIPS ↓", "FVD ↓"]
    assert row[0].endswith("w/o emg+hand_force") and row[1] == "3" and row[5:] == ["n/a", "n/a"]
    assert float(row[3]) == pytest.approx(r["metrics"]["psnr"], abs=0.005)
    html = (tmp_path / "res" / "drop_curves.html").read_text()
    assert "Plotly.newPlot" in html and '<script src="http' not in html and len(html) > 1_000_000  # plotly.js inline


def test_evaluate_keep_and_batch_size_independence(setup, tmp_path, offline_weights):
    common = [setup["ckpt"], setup["data"], "--keep", "hand_pose", "--limit", "2", "--num-inference-steps", "1"]
    assert _run(common + ["--out", tmp_path / "a.json", "--batch-size", "2"]) == 0
    assert _run(common + ["--out", tmp_path / "b.json", "--batch-size", "1"]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["settings"]["modalities_used"] == ["hand_pose"] and a["settings"]["keep"] == ["hand_pose"]
    # One noise draw per (seed, clip index): the batch size does not change the result.
    assert [c["index"] for c in a["per_clip"]] == [c["index"] for c in b["per_clip"]]
    assert [c["mse"] for c in a["per_clip"]] == pytest.approx([c["mse"] for c in b["per_clip"]], rel=1e-5)


def test_copy_last_baseline_needs_no_checkpoint(setup, tmp_path, offline_weights):
    from mmsim_core.data import ClipDataset

    out = tmp_path / "copy.json"
    assert _run([setup["data"], "--baseline", "copy-last", "--out", out]) == 0
    r = json.loads(out.read_text())
    assert r["label"] == "copy-last" and r["num_clips"] == setup["num_test"]
    assert r["settings"]["checkpoint"] is None and r["settings"]["modalities_used"] == []
    ds = ClipDataset(setup["data"], split="test")
    per_frame = np.mean([[((it["context"][-1] / 255.0 - f / 255.0) ** 2).mean() for f in it["future"]] for it in ds],
                        axis=0)  # fmt: skip
    assert r["per_frame"]["mse"] == pytest.approx(per_frame.tolist(), rel=1e-5)
    # '-' in place of the checkpoint works too; FVD and LPIPS are computed when their weights are given.
    i3d = _save_standin(tmp_path / "i3d.pt")
    backbone, _ = _alexnet_features_file(tmp_path / "alex.pth")
    out2 = tmp_path / "copy2.json"
    assert _run(["-", setup["data"], "--baseline", "copy-last", "--out", out2, "--i3d", i3d,
                 "--lpips-backbone", backbone, "--limit", "4", "--compare", out]) == 0
    r2 = json.loads(out2.read_text())
    assert r2["unavailable"] == {} and r2["metrics"]["fvd"] >= 0 and len(r2["per_frame"]["lpips"]) == 8
    assert r2["settings"]["metric_definitions"]["fvd"]["i3d"] == str(i3d)
    rows = _md_rows(out2.with_suffix(".md").read_text())
    assert [row[0] for row in rows[1:3]] == ["copy-last", "copy-last"]  # this run and the compared one


def test_no_actions_baseline(setup, tmp_path, offline_weights):
    out = tmp_path / "noact.json"
    assert _run([setup["ckpt"], setup["data"], "--baseline", "no-actions", "--out", out, "--limit", "2",
                 "--num-inference-steps", "1"]) == 0
    r = json.loads(out.read_text())
    assert r["label"] == "no-actions" and r["settings"]["modalities_used"] == []
    assert r["settings"]["checkpoint"] == str(setup["ckpt"])


def test_evaluate_clear_errors(setup, tmp_path, capsys):
    assert _run([tmp_path / "nope", setup["data"], "--out", tmp_path / "r.json"]) == 1
    assert "checkpoint folder" in capsys.readouterr().err
    assert _run([setup["ckpt"], tmp_path / "no_data", "--out", tmp_path / "r.json"]) == 1
    assert "dataset folder" in capsys.readouterr().err
    assert _run([setup["ckpt"], setup["data"], "--drop", "gaze", "--out", tmp_path / "r.json"]) == 2
    err = capsys.readouterr().err
    assert "unknown modality 'gaze' in --drop" in err and "hand_force" in err
    assert _run([setup["ckpt"], setup["data"], "--split", "val", "--out", tmp_path / "r.json"]) == 2
    assert "split must be one of" in capsys.readouterr().err
    assert _run([setup["data"], "--out", tmp_path / "r.json"]) == 2  # usage errors: 2, data errors: 1
    assert "copy-last" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_checkpoint_resolution(setup, tmp_path):
    import shutil

    from mmsim_core.errors import MMSimError
    from mmsim_core.evaluation.loading import resolve_checkpoint

    run = tmp_path / "run"
    shutil.copytree(setup["ckpt"], run / "final")
    assert resolve_checkpoint(str(run)) == str(run / "final")  # a training run folder
    step = tmp_path / "step_0000010"
    shutil.copytree(setup["ckpt"], step / "pipeline")
    assert resolve_checkpoint(str(step)) == str(step / "pipeline")  # a checkpoint folder
    assert resolve_checkpoint("someone/mmsim-demo") == "someone/mmsim-demo"  # a Hub id, loaded by diffusers
    (tmp_path / "empty").mkdir()
    with pytest.raises(MMSimError, match="holds no pipeline"):
        resolve_checkpoint(str(tmp_path / "empty"))
