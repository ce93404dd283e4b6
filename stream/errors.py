"""The errors a user sees as one line (exit 2 for usage and bad input, 1 for output failures)."""


class UsageError(ValueError):
    """A request that cannot be carried out as asked (one line for the user)."""


class InputError(Exception):
    """The input cannot be read; the message is one line for the user."""


class OutputError(Exception):
    """The output cannot be written; the message is one line for the user."""
