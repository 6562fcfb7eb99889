"""Hugging Face Spaces entry point: ``python app.py [--checkpoint FOLDER_OR_HUB_ID]`` launches the mmsim
studio (the same as ``mmsim app``)."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
