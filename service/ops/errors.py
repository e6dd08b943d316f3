"""The one error of operations."""


class OpsError(RuntimeError):
    """A process or the local cluster cannot do what was asked; the message names the fix."""
