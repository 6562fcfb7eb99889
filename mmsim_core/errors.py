"""Errors users see. Each names what is wrong and where (file, stream, field)."""


class MMSimError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class RecordingError(MMSimError):
    """A recording (HDF5 or its world video) cannot be used as it is."""

    def __init__(self, path, message: str, stream: str | None = None):
        self.path = str(path)
        self.stream = stream
        where = f"{self.path}" + (f" [{stream}]" if stream else "")
        super().__init__(f"{where}: {message}")


class DatasetError(MMSimError):
    """A processed clip dataset (manifest, shards, statistics) is missing or malformed."""


class ActionInputError(MMSimError, ValueError):
    """Action or context arrays given to a model/pipeline have the wrong names, shapes or values."""


class UsageError(MMSimError, ValueError):
    """An option or argument the user gave is invalid (the command line exits with status 2, as for a
    mistyped flag); other MMSimErrors are problems with the data or files and exit with status 1."""


class CheckpointError(MMSimError):
    """A checkpoint or pipeline file cannot be written or loaded (truncated, corrupt, a pickle, disk full)."""


def exit_status(error: MMSimError) -> int:
    """The command line's exit status for an error: 2 for a usage error, 1 for anything else."""
    return 2 if isinstance(error, UsageError) else 1
