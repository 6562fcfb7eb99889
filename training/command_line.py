"""What the ``mmsim`` subcommands in training/ share on the command line: a parser whose mistakes, like any
error found later, become one ``PROG: error: ...`` line on stderr and an exit status (never a traceback), the
``COMMAND`` level of commands with subcommands, and the start of every ``main``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from mmsim_core.errors import MMSimError, UsageError, exit_status


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose own mistakes (a missing or mistyped flag) raise a :class:`UsageError` (exit status 2)
    instead of printing usage and exiting, so every error reaches the caller's one-line report."""

    def error(self, message: str):
        raise UsageError(message)


def subcommand_parser(prog: str, description: str) -> tuple[ArgumentParser, argparse._SubParsersAction]:
    """``(parser, subparsers)`` for ``mmsim NAME COMMAND ...``: the command is required, and its parsers raise
    like :class:`ArgumentParser`."""
    p = ArgumentParser(prog=prog, description=description)
    return p, p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser)


def start(argv: Sequence[str] | None, prog: str, commands: Sequence[str] = ()) -> tuple[list[str], str]:
    """The arguments (``sys.argv[1:]`` by default) and the name errors are reported under: ``prog``, followed by
    the subcommand when the first argument is one of ``commands``. Logs INFO to stderr unless logging is set up."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return argv, (f"{prog} {argv[0]}" if argv and argv[0] in commands else prog)


def report_error(prog: str, error: MMSimError) -> int:
    """Print ``error`` as one line (its whitespace folded) under ``prog``; returns its exit status."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return exit_status(error)
