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


def test_validation_errors_are_one_log_line_and_bugs_keep_their_traceback(studio, tmp_path, caplog, capfd):
    """A user's mistake through the served studio: one INFO line naming the handler and the problem, no
    traceback on stderr; a real bug in a handler is logged with its traceback."""
    import logging

    from mmsim.app.ui import ui_errors

    url, _ = studio
    c = _client(url)
    bad = tmp_path / "wrong_steps.npz"
    np.savez(bad, emg=np.zeros((5, 2, 8), np.float32))
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="mmsim.app"):
        with pytest.raises(Exception, match="wrong_steps.npz"):
            c.predict(None, gradio_client.handle_file(str(bad)), "emg", [], api_name="/load_upload")
    mine = [r for r in caplog.records if r.name == "mmsim.app" and "refused" in r.getMessage()]
    assert len(mine) == 1, [r.getMessage() for r in caplog.records]
    rec = mine[0]
    assert rec.levelno == logging.INFO and rec.exc_info is None
    assert "load_upload refused: wrong_steps.npz" in rec.getMessage() and "\n" not in rec.getMessage()
    assert "Traceback" not in capfd.readouterr().err

    @ui_errors
    def really_buggy():
        return None + 1

    caplog.clear()
    import gradio as gr

    with caplog.at_level(logging.INFO, logger="mmsim.app"), pytest.raises(gr.Error, match="internal error"):
        really_buggy()
    bug = [r for r in caplog.records if r.name == "mmsim.app"]
    assert len(bug) == 1 and bug[0].levelno == logging.ERROR and bug[0].exc_info is not None


def test_a_full_queue_says_busy_retry_instead_of_hanging(demo_tiny_checkpoint):
    """Renders run one at a time; with the engine held, a bounded queue (max 2 waiting) takes what fits and
    refuses the rest at once with Gradio's "Queue is full! Please try again." (the page shows "This
    application is currently busy. Please try again."); once free, every accepted render completes."""
    import time

    from gradio_client.utils import Status

    from conftest import DEMO_DATA, _free_port
    from mmsim.app.cli import create_app, launch

    demo, engine = create_app(str(demo_tiny_checkpoint), str(DEMO_DATA))
    port = _free_port()
    launch(demo, "127.0.0.1", port, concurrency=4, prevent_thread_lock=True, max_queue=2)
    url = f"http://127.0.0.1:{port}/"
    try:
        clients = [_client(url) for _ in range(6)]
        for i, c in enumerate(clients):
            c.predict(i, "emg", [], api_name="/load_clip")
        engine.lock.acquire()  # the model is busy: nothing can finish until it is released
        try:
            first = clients[0].submit(["emg"], "", False, 0, 2, 0, api_name="/generate")
            t0 = time.perf_counter()
            while first.status().code != Status.PROCESSING:  # running, so no longer waiting in the queue
                assert time.perf_counter() - t0 < 60, first.status()
                time.sleep(0.05)
            rest = []
            for c in clients[1:]:
                job = c.submit(["emg"], "", False, 0, 2, 0, api_name="/generate")
                t0 = time.perf_counter()  # each join answered before the next: the queue's count is then exact
                while job.status().code in (Status.STARTING, Status.JOINING_QUEUE) and not job.done():
                    assert time.perf_counter() - t0 < 60, job.status()
                    time.sleep(0.05)
                rest.append(job)
            refused, waiting = [], []
            for job in rest:
                try:
                    job.result(timeout=1.0)
                except Exception as e:  # noqa: BLE001 - sorted below
                    (refused if "Queue is full" in str(e) else waiting).append((job, e))
            assert len(refused) == 3, [str(e) for _, e in refused + waiting]  # 5 submitted, 2 may wait
            assert all("try again" in str(e).lower() for _, e in refused)
        finally:
            engine.lock.release()
        assert "Rendered 8 frames" in first.result(timeout=120)[2]
        for job, _ in waiting:
            assert "Rendered 8 frames" in job.result(timeout=120)[2]
    finally:
        demo.close()


def test_max_queue_must_be_positive(capsys):
    from mmsim.app.cli import main

    assert main(["--max-queue", "0"]) == 2
    assert capsys.readouterr().err.strip() == "mmsim app: error: --max-queue must be at least 1, got 0"
