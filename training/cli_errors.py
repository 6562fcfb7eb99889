"""What the ``mmsim`` subcommands in training/ share on the command line: a user's mistake, in argparse or
found later, is one ``PROG: error: ...`` line on stderr and an exit status, never a traceback."""

from __future__ import annotations

import argparse
import sys

from mmsim_core.errors import MMSimError, UsageError, exit_status


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose own mistakes (a missing or mistyped flag) raise a :class:`UsageError` (exit status 2)
    instead of printing usage and exiting, so every error reaches the caller's one-line report."""

    def error(self, message: str):
        raise UsageError(message)


def report_error(prog: str, error: MMSimError) -> int:
    """Print ``error`` as one line (its whitespace folded) under ``prog``; returns its exit status."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return exit_status(error)
