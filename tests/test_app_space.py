"""`mmsim space OUT` writes a Space folder that runs the studio from that folder alone: its own library,
studio, checkpoint and clips, CPU torch in its requirements, weights through Git LFS, no plain file over
the Space limit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    out = tmp_path_factory.mktemp("space") / "studio"
    res = subprocess.run([sys.executable, "-m", "mmsim_cli", "space", str(out)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "through Git LFS" in res.stdout
    return out


def test_space_folder_contents(space):
    from mmsim.app.space import PLAIN_FILE_LIMIT_MB

    req = (space / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in req and "\ntorch\n" in req
    assert "app_file: app.py" in (space / "README.md").read_text()
    assert "*.safetensors filter=lfs" in (space / ".gitattributes").read_text()
    weights = list(space.glob("examples/demo_checkpoint/**/*.safetensors"))
    assert weights
    plain = [f for f in space.rglob("*") if f.is_file() and f.suffix not in (".safetensors", ".h5")]
    assert max(f.stat().st_size for f in plain) < PLAIN_FILE_LIMIT_MB * 2**20
    assert not (space / "training").exists() and not (space / "tests").exists()


def test_space_refuses_a_non_empty_folder(space):
    res = subprocess.run([sys.executable, "-m", "mmsim_cli", "space", str(space)], capture_output=True, text=True)
    assert res.returncode == 1 and "not empty" in res.stderr


def test_space_imports_its_own_copy(space):
    code = ("import runpy; runpy.run_path('app.py', run_name='check'); "
            "import mmsim.app.cli, mmsim_core; print(mmsim.app.cli.__file__); print(mmsim_core.__file__)")
    res = subprocess.run([sys.executable, "-c", code], cwd=space, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    files = [Path(line) for line in res.stdout.split()]
    assert files and all(space.resolve() in f.resolve().parents for f in files), files


@pytest.mark.slow
def test_space_app_starts_and_renders(space):
    gradio_client = pytest.importorskip("gradio_client")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADIO_")}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--threads", "1"], cwd=space, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(1)
        c = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        c.predict(clip=1, api_name="/load_clip")
        _, video, report, _ = c.predict(api_name="/generate")
        assert "Rendered 8 frames" in report
    finally:
        proc.terminate()
        proc.wait(timeout=30)
