"""The bundled demo dataset loads with the DESIGN §6 item contract."""

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
