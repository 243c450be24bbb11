"""Exceptions raised while scoring imagery.

Each subclass also inherits the matching builtin, so callers can catch either ``ScoringError`` or, say, ``OSError``.
Messages name the file, what is wrong with it and what to do about it.
"""


class ScoringError(Exception):
    """Base class of every scoring error."""


class ScoringConfigError(ScoringError, ValueError):
    """The scoring options or arguments are invalid."""


class ModelNotFoundError(ScoringError, FileNotFoundError):
    """No model bundle was given and the default one is not installed."""


class SceneReadError(ScoringError, OSError):
    """A raster cannot be opened or read (missing, corrupt, truncated or not a raster)."""


class MissingGeoreferenceError(ScoringError, ValueError):
    """A raster has no CRS and no ground sample distance was given for it."""


class BandLayoutError(ScoringError, ValueError):
    """A raster's bands cannot be matched to the bands the model expects."""


class EmptySceneError(ScoringError, ValueError):
    """A raster has no valid pixel (empty, or entirely nodata/transparent)."""
