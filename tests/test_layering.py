"""The project's layering, enforced: import-linter contracts (.importlinter) and the installed package names."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed (pip install -e '.[dev]')")
def test_import_contracts_hold(tmp_path):
    # Run from outside the checkout: its folders app/ and training/ must be found as mmsim.app and
    # mmsim.training (the installed names), not as top-level packages of the working directory.
    result = subprocess.run(["lint-imports", "--no-cache", "--config", str(REPO / ".importlinter")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_package_folder_is_installed_under_the_project_names():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, mapped = set(project["packages"]), project["package-dir"]
    assert not {p.split(".")[0] for p in packages} - {"mmsim", "mmsim_core", "mmsim_cli"}  # no generic top level
    folder_of = {name: folder for name, folder in mapped.items()}
    expected = set()
    for init in REPO.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(REPO)
        top = rel.parts[0]
        if top in ("tests", "examples", "benchmarks") or "results" in rel.parts:
            continue
        name = next((n for n, f in folder_of.items() if rel.parts[0] == f), top)
        expected.add(".".join([name, *rel.parts[1:]]))
    assert expected == packages, f"pyproject.toml [tool.setuptools] packages: add {sorted(expected - packages)}, " \
                                 f"remove {sorted(packages - expected)}"


def test_studio_entry_point_maps_the_namespace_in_a_plain_checkout(tmp_path):
    # A Space runs app.py from a copy of the repository that is not pip-installed: site-packages without
    # the project's editable-install hook (python -S skips the .pth files that install it).
    import site

    code = ("import sys, runpy; sys.path += %r; sys.argv = ['app.py', '--help']; "
            "runpy.run_path(%r, run_name='__main__')") % (site.getsitepackages(), str(REPO / "app.py"))
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr[-2000:]
