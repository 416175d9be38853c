"""Errors a user can cause: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, explained in the message."""
