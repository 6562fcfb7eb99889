"""The bundled demo dataset loads with the ClipDataset item contract."""

from pathlib import Path

import numpy as np

from mmsim_core.data import ClipDataset
from mmsim_core.schema import MODALITIES

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_data"


def test_demo_dataset_contract():
    for split in ("train", "test"):
        ds = ClipDataset(DEMO, split=split)
        assert len(ds) >= 10
        item = ds[0]
        assert item["context"].shape == (4, 64, 64, 3) and item["context"].dtype == np.uint8
        assert item["future"].shape == (8, 64, 64, 3) and item["future"].dtype == np.uint8
        assert set(item["actions"]) == set(MODALITIES)
        for name, x in item["actions"].items():
            assert x.shape == (12, *MODALITIES[name].shape) and x.dtype == np.float32
            assert np.isfinite(x).all()
        assert set(item["text"]) == {"verb", "phrase", "sentence"}
        assert {"subject", "activity", "start_time_s", "frame_step"} <= set(item["meta"])
    assert {ClipDataset(DEMO, "test")[i]["meta"]["subject"] for i in range(3)} == {"S02"}


def test_export_demo_checkpoint_writes_fp16_and_a_card(tiny_setup, tmp_path):
    import json
    import subprocess
    import sys

    import torch
    from safetensors import safe_open

    from mmsim.training.config import resolve_config
    from mmsim.training.evaluate import load_pipeline
    from mmsim.training.train import train

    run = tmp_path / "run"
    train(resolve_config("tiny", data=str(tiny_setup["data"]), out=str(run), max_steps=2, checkpoint_every=2))
    quality = {"seed": 7919, "results": {k: {"psnr": p, "ssim": 0.5, "num_clips": 3} for k, p in
                                         (("checkpoint", 25.0), ("copy-last", 23.5), ("no-actions", 23.0))}}
    (tmp_path / "q.json").write_text(json.dumps(quality))
    out = tmp_path / "demo"
    script = Path(__file__).resolve().parents[1] / "examples" / "export_demo_checkpoint.py"
    subprocess.run([sys.executable, str(script), str(run), "--out", str(out), "--quality", str(tmp_path / "q.json"),
                    "--steps", "3"], check=True, capture_output=True)
    weights = out / "denoiser" / "diffusion_pytorch_model.safetensors"
    with safe_open(str(weights), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    card = (out / "README.md").read_text()
    assert "3 step(s) by default" in card and "world seed 7919" in card and "| copy the last context frame | 23.50 |" in card
    assert json.loads((out / "training_config.json").read_text())["max_steps"] == 2
    pipe, _ = load_pipeline(str(out), "cpu")
    assert pipe.denoiser.dtype == torch.float32 and pipe.config.default_num_inference_steps == 3
