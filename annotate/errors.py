"""The one error type the CLI turns into a message: bad input, said plainly (no torch import here)."""


class UserError(Exception):
    """Input the command can't work with; the message says what and, where possible, what to do."""
