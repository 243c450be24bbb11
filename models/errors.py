"""Exceptions raised by the models package."""


class ModelError(Exception):
    """Base class of every models error."""


class UnknownModelError(ModelError, KeyError):
    """No architecture is registered under that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BundleError(ModelError, ValueError):
    """A checkpoint bundle is unreadable or does not fit the model it describes."""


class BundleNotFoundError(BundleError, FileNotFoundError):
    """The checkpoint bundle file does not exist."""
