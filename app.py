"""Hugging Face Spaces entry point: ``python app.py [--checkpoint FOLDER_OR_HUB_ID]`` launches the mmsim
studio (the same as ``mmsim app``)."""

import sys
from pathlib import Path

try:
    import mmsim.app  # noqa: F401  (installed: `pip install -e .`)
except ModuleNotFoundError:
    # A plain checkout (a Space runs app.py without installing the project): map the folders the way
    # pyproject.toml's package-dir does, `mmsim.app` -> app/ and `mmsim.training` -> training/.
    import types

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    namespace = types.ModuleType("mmsim")
    namespace.__path__ = [str(Path(__file__).resolve().parent)]
    sys.modules["mmsim"] = namespace

from mmsim.app.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
