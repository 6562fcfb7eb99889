"""Hugging Face Spaces entry point: ``python app.py`` launches the mmsim studio."""

import sys

from mmsim_cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
