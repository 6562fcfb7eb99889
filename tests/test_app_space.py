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


# A Python start-up hook for the Space's processes: any file or folder of this repository the process opens
# (an import through the editable install, a checkpoint read from examples/) is an error, so what runs is
# the Space folder alone.
GUARD = """import os, sys
_REPO = {repo!r}
def _guard(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
        try:
            path = os.path.abspath(os.fsdecode(args[0]))
        except TypeError:  # a file descriptor
            return
        if path == _REPO or path.startswith(_REPO + os.sep):
            raise PermissionError(f"the Space folder reached outside itself: {{path}}")
sys.addaudithook(_guard)
"""


@pytest.fixture(scope="module")
def alone_env(tmp_path_factory):
    """The environment of a process that must run from the Space folder alone (no GRADIO_ settings of the
    test run, the guard above installed)."""
    guard = tmp_path_factory.mktemp("guard")
    (guard / "sitecustomize.py").write_text(GUARD.format(repo=str(REPO.resolve())))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADIO_")}
    env["PYTHONPATH"] = str(guard)
    return env


def test_the_guard_catches_the_repository(alone_env, tmp_path):
    res = subprocess.run([sys.executable, "-c", f"open({str(REPO / 'README.md')!r})"], cwd=tmp_path,
                         env=alone_env, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "reached outside itself" in res.stderr


def test_space_folder_contents(space):
    from mmsim.app.space import PLAIN_FILE_LIMIT_MB, is_binary

    req = (space / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in req and "\ntorch\n" in req
    assert "app_file: app.py" in (space / "README.md").read_text()
    assert "*.safetensors filter=lfs" in (space / ".gitattributes").read_text()
    weights = list(space.glob("examples/demo_checkpoint/**/*.safetensors"))
    assert weights
    # the proposer and the goal scorer that ranks its samples travel with it
    assert (space / "examples" / "demo_proposer" / "model_index.json").is_file()
    assert (space / "examples" / "demo_scorer" / "config.json").is_file()
    # git itself says which files its LFS filter takes: every binary file (the Hub refuses binary plain
    # blobs of any size), and no plain file is over the Space limit.
    files = [str(f.relative_to(space)) for f in space.rglob("*") if f.is_file() and ".git" not in f.parts]
    subprocess.run(["git", "init", "-q", str(space)], check=True)
    attrs = subprocess.run(["git", "check-attr", "filter", "--stdin"], cwd=space, input="\n".join(files),
                           capture_output=True, text=True, check=True).stdout
    lfs = {line.split(": filter: ")[0] for line in attrs.splitlines() if line.endswith(": filter: lfs")}
    assert {f for f in lfs if "/demo_checkpoint/" in f and f.endswith(".safetensors")}
    assert any(f.endswith(".oracle.npz") for f in lfs)  # the world view's oracles travel with the clips
    plain = [f for f in files if f not in lfs]
    assert not [f for f in plain if is_binary(space / f)]
    assert max((space / f).stat().st_size for f in plain) < PLAIN_FILE_LIMIT_MB * 2**20
    assert not (space / "training").exists() and not (space / "tests").exists()


def test_repository_demo_weights_are_real_files():
    """The repository keeps its demo weights as plain files (see .gitattributes): no LFS filter applies to them
    and none of them is a pointer, so clones without Git LFS can load the demo."""
    weights = sorted(REPO.glob("examples/demo_checkpoint/**/*.safetensors"))
    assert weights
    for w in weights:
        with open(w, "rb") as f:
            assert not f.read(64).startswith(b"version https://git-lfs"), f"{w} is a Git LFS pointer"
    if (REPO / ".git").exists():
        res = subprocess.run(["git", "check-attr", "filter", "--", *map(str, weights)], cwd=REPO,
                             capture_output=True, text=True)
        assert res.returncode == 0 and ": filter: lfs" not in res.stdout, res.stdout


def test_space_refuses_a_non_empty_folder(space):
    res = subprocess.run([sys.executable, "-m", "mmsim_cli", "space", str(space)], capture_output=True, text=True)
    assert res.returncode == 1 and "not empty" in res.stderr


def test_space_imports_its_own_copy(space, alone_env):
    code = ("import runpy; runpy.run_path('app.py', run_name='check'); "
            "import mmsim.app.cli, mmsim.app.ui, mmsim_core; print(mmsim.app.cli.__file__); "
            "print(mmsim_core.__file__)")
    res = subprocess.run([sys.executable, "-c", code], cwd=space, env=alone_env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    files = [Path(line) for line in res.stdout.split()]
    assert files and all(space.resolve() in f.resolve().parents for f in files), files


@pytest.mark.slow
def test_space_app_starts_and_renders(space, alone_env):
    """The studio started from the Space folder, with every read of this repository refused, renders."""
    gradio_client = pytest.importorskip("gradio_client")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--threads", "1"], cwd=space,
                            env=alone_env,
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
