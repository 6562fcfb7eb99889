"""Hugging Face Spaces entry point: ``python app.py [--checkpoint FOLDER_OR_HUB_ID]`` launches the mmsim
studio (the same as ``mmsim app``). ``mmsim space OUT`` writes a Space folder around this file."""

import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
if (HERE / "app" / "cli.py").is_file() and "mmsim" not in sys.modules:
    # Run the studio and library beside this file (a checkout or a Space folder), installed or not: map the
    # folders the way pyproject.toml's package-dir does, `mmsim.app` -> app/ and `mmsim.training` -> training/.
    sys.path.insert(0, str(HERE))
    namespace = types.ModuleType("mmsim")
    namespace.__path__ = [str(HERE)]
    sys.modules["mmsim"] = namespace

from mmsim.app.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
