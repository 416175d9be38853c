"""Errors a user can cause: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class DeviceRefused(UserError):
    """The device (or our own set-up for it) turns us away for a reason retrying cannot fix: an
    unknown or changed host key, a refused SSH key, nothing deployed. The bench harness stops
    at once instead of retrying."""


class AgentFailure(RuntimeError):
    """The device agent could not run (or the link dropped) after all retries. Raised by the
    transport (remote/ssh.py) and the bench runner (remote/bench.py) alike."""
