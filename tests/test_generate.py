"""`mmsim generate`: one clip to an mp4 (truth | prediction | difference) and a PNG filmstrip."""

import json

import cv2
import numpy as np
import pytest

from mmsim_core.evaluation.video import compose_filmstrip, compose_video, difference_image, upscale
from mmsim.training.generate import filmstrip_path, main


@pytest.fixture
def setup(tiny_setup):
    return tiny_setup


def test_panels_layout():
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    fut = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    video = compose_video(ctx, fut, fut.copy(), scale=2)
    assert video.dtype == np.uint8 and video.shape[0] == 12 and video.shape[1] > 32 and video.shape[2] > 3 * 32
    same = difference_image(fut, fut)
    assert same.shape == fut.shape and len(np.unique(same.reshape(-1, 3), axis=0)) == 1  # one colour: zero error
    assert not np.array_equal(difference_image(fut, 255 - fut), same)
    strip = compose_filmstrip(ctx, fut, 255 - fut, scale=1)
    assert strip.ndim == 3 and strip.shape[1] > 12 * 16 and strip.shape[0] > 3 * 16
    big = upscale(fut, 3)  # one frame or a stack: nearest-neighbour blocks
    assert big.shape == (8, 48, 48, 3)
    assert np.array_equal(big[:, ::3, ::3], fut) and np.array_equal(big[:, 2::3, 1::3], fut)
    assert np.array_equal(upscale(fut[0], 2), big[0, ::3, ::3].repeat(2, 0).repeat(2, 1)) and upscale(fut, 1) is fut


def test_generate_writes_mp4_and_filmstrip(setup, tmp_path, capsys, monkeypatch):
    from mmsim_core.video import read_video, video_info

    out = tmp_path / "clips" / "video.mp4"
    rc = main([str(setup["ckpt"]), str(setup["data"]), "--index", "1", "--out", str(out), "--drop", "emg",
               "--steps", "1", "--seed", "5", "--scale", "2"])
    assert rc == 0
    info = video_info(out)
    assert info["frames"] == 12 and info["width"] > 3 * 128
    frames = read_video(out)
    assert frames.shape[0] == 12 and frames.std() > 0
    strip = cv2.imread(str(filmstrip_path(out)))
    assert strip is not None and strip.shape[1] > 12 * 128
    printed = capsys.readouterr().out
    assert "['hand_pose', 'body_pose', 'hand_force']" in printed and "psnr=" in printed

    # Same noise as `mmsim evaluate` for this clip and seed: the printed metrics match its per-clip row.
    from mmsim.training.evaluate import main as evaluate_main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    res = tmp_path / "res.json"
    assert evaluate_main([str(setup["ckpt"]), str(setup["data"]), "--drop", "emg", "--num-inference-steps", "1",
                          "--seed", "5", "--limit", "2", "--out", str(res), "--no-lpips"]) == 0
    row = next(c for c in json.loads(res.read_text())["per_clip"] if c["index"] == setup["num_test"] - 1)
    assert row["index"] == setup["num_test"] - 1
    rc = main([str(setup["ckpt"]), str(setup["data"]), "--index", str(row["index"]), "--out", str(tmp_path / "b.mp4"),
               "--drop", "emg", "--steps", "1", "--seed", "5"])
    assert rc == 0
    line = capsys.readouterr().out
    assert f"psnr={row['psnr']:.2f}" in line and f"mse={row['mse']:.4f}" in line


def test_generate_errors(setup, tmp_path, capsys):
    n = setup["num_test"]
    assert main([str(setup["ckpt"]), str(setup["data"]), "--index", str(n), "--out", str(tmp_path / "v.mp4")]) == 2
    assert f"has {n} clips" in capsys.readouterr().err
    assert main([str(setup["ckpt"]), str(setup["data"]), "--index", "0", "--keep", "tactile",
                 "--out", str(tmp_path / "v.mp4")]) == 2
    assert "unknown modality 'tactile' in --keep" in capsys.readouterr().err
    assert main([str(tmp_path / "none"), str(setup["data"]), "--index", "0", "--out", str(tmp_path / "v.mp4")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "v.mp4").exists()
