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
