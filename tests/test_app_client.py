"""The studio end to end through ``gradio_client``: a launched app on a free localhost port with a tiny
untrained checkpoint, driven like an API user (load clip -> edit -> generate -> export), errors that leave
the app working, and 4 concurrent clients."""

from __future__ import annotations

import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

gradio_client = pytest.importorskip("gradio_client")

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo_data"


def _client(url):
    return gradio_client.Client(url, verbose=False)


def test_load_edit_generate_export(studio, tmp_path):
    from mmsim_core.data import ClipDataset

    url, engine = studio
    c = _client(url)
    out = c.predict(clip=3, modality="emg", channels=["L1", "L2"], api_name="/load_clip")
    assert "#3" in out[5]  # status names the clip (gr.State outputs are not sent to clients)
    assert out[1]["steps"] == 12 and out[1]["tiles"][0]["key"] == "truth"  # the viewer gets every frame at once
    # Edit: scale two EMG channels over the future, then drag one point.
    c.predict("emg", ["L1", "L2"], 0, 4, 11, "scale", 3.0, api_name="/range_edit")
    step = json.dumps({"op": "set_point", "modality": "emg", "channels": ["R3"], "step": 6, "value": 0.5})
    view = c.predict(step, "emg", ["L1", "L2"], 0, api_name="/apply_edit")
    recipe = json.loads(view[2])
    assert [r["op"] for r in recipe] == ["scale", "set_point"]
    payload = view[0]
    assert payload["modality"] == "emg" and payload["series"][0]["name"] == "L1"
    # Generate: video, filmstrip and metrics against the recorded future.
    res = c.predict(list(["hand_pose", "body_pose", "emg", "hand_force"]), "", False, 0, 2, 0, api_name="/generate")
    filmstrip, video, text, viewer = res
    assert Path(video["video"] if isinstance(video, dict) else video).suffix == ".mp4"
    assert Path(filmstrip).is_file()
    assert "PSNR" in text and "copy-last" in text and "no actions" in text  # references beside the scores
    # After an edit the viewer shows the prediction before the edit and the edit's effect.
    assert {"truth", "prediction", "difference", "before", "effect"} <= {t["key"] for t in viewer["tiles"]}
    # Sweep: one future per value, as a grid; annotate a span and use it as the prompt.
    grid, msg = c.predict("emg", ["L1"], 4, 11, "scale", "0, 2", ["emg"], "", False, 0, 2, api_name="/sweep")
    assert Path(grid).is_file() and "2 futures" in msg
    rows, sentence = c.predict("step", 4, 11, "Peel a potato", "", "", "", api_name="/annotate")
    assert sentence == "person peel potato" and rows["data"][0][4] == "Peel a potato"
    # Export the edited clip: the HDF5 round-trips the edits.
    files = c.predict(api_name="/export_clip")
    paths = [Path(f) for f in files]
    h5 = next(p for p in paths if p.suffix == ".h5")
    assert any(p.suffix == ".mp4" for p in paths)
    from mmsim.app.io import read_trajectories

    traj = read_trajectories(h5)
    # The edited actions travel with the frames they produced, not with the recorded future.
    assert traj["meta"]["future_source"].startswith("generated") and traj["meta"]["edited"]
    assert "normalization.json" in traj["meta"]["units"]
    assert any(p.name == "normalization.json" for p in paths)
    item = ClipDataset(DEMO, split="test")[3]
    assert not np.array_equal(traj["frames"][4:], item["future"])
    np.testing.assert_allclose(traj["actions"]["emg"][4:, 0, :2], item["actions"]["emg"][4:, 0, :2] * 3.0, rtol=1e-5)
    assert [r["op"] for r in traj["meta"]["edit_recipe"]] == ["scale", "set_point"]
    assert traj["meta"]["annotations"][0]["activity"] == "Peel a potato"
    # Batch export: the current edits applied to three clips -> a dataset ClipDataset reads.
    recipe_text = c.predict(api_name="/recipe")
    zpath, msg = c.predict("0-2", recipe_text, True, ["emg", "hand_force"], 0, 2, api_name="/batch_export")
    assert "3 clips" in msg and "/tmp" not in msg and str(tmp_path) not in msg  # no server paths
    with zipfile.ZipFile(zpath) as z:
        assert sum(n.endswith(".mp4") for n in z.namelist()) == 3  # an MP4 per clip
        z.extractall(tmp_path / "aug")
    ds = ClipDataset(tmp_path / "aug", split="train")
    assert len(ds) == 3
    it = ds[1]
    src = ClipDataset(DEMO, split="test")[1]
    np.testing.assert_allclose(it["actions"]["emg"][4:, 0, :2], src["actions"]["emg"][4:, 0, :2] * 3.0, rtol=1e-5)
    assert it["meta"]["future_source"] == "generated"


def test_api_prompt_optional_and_named_outputs(studio):
    """The documented example: keyword arguments, the prompt left out, outputs named after their labels."""
    url, _ = studio
    c = _client(url)
    info = c.view_api(return_format="dict", print_info=False)["named_endpoints"]
    gen = info["/generate"]
    assert all(p["parameter_has_default"] for p in gen["parameters"])
    assert [r["label"] for r in gen["returns"]] == ["filmstrip", "ground truth | prediction | difference (MP4)",
                                                   "render report", "frames at the cursor"]
    assert not any(r["label"].startswith("value_") for ep in ("/load_clip", "/range_edit", "/drag_point")
                   for r in info[ep]["returns"])
    c.predict(clip=3, modality="emg", channels=["L1", "L2"], api_name="/load_clip")
    c.predict(modality="emg", channels=["L1", "L2"], cursor=0, start=4, end=11, operation="scale", amount=3.0,
              api_name="/range_edit")
    filmstrip, video, report, _ = c.predict(api_name="/generate")
    assert "Rendered 8 frames" in report
    rrd = Path(c.predict(api_name="/export_rerun"))
    assert rrd.suffix == ".rrd" and rrd.stat().st_size > 10_000


def test_invalid_upload_then_generate_still_works(studio, tmp_path):
    url, _ = studio
    c = _client(url)
    bad = tmp_path / "bad.npz"
    np.savez(bad, emg=np.zeros((5, 2, 8), np.float32))  # wrong number of steps
    img = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(Exception, match="steps"):
        c.predict([gradio_client.handle_file(str(img))] * 4, gradio_client.handle_file(str(bad)), "emg", [],
                  api_name="/load_upload")
    with pytest.raises(Exception, match="load a clip first"):
        c.predict(["emg"], "", False, 0, 2, 0, api_name="/generate")
    c.predict(0, "emg", [], api_name="/load_clip")
    res = c.predict(["emg"], "", False, 1, 2, 0, api_name="/generate")
    assert "Rendered 8 frames" in res[2]


def test_four_concurrent_clients(studio):
    url, _ = studio

    def user(i):
        c = _client(url)
        c.predict(i, "hand_force", [], api_name="/load_clip")
        c.predict("hand_force", ["left"], 0, 0, 11, "zero", 0, api_name="/range_edit")
        return c.predict(["hand_force", "emg"], "", False, i, 2, 0, api_name="/generate")[2]

    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(user, range(4)))
    assert all("Rendered 8 frames" in t for t in texts)
