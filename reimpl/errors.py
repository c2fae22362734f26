"""The loader's one error: a checkpoint that can't be found, read or loaded (a leaf module)."""


class CheckpointError(Exception):
    """A checkpoint that can't be found, read or loaded; the message says which and why."""
