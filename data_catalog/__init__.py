"""What labelled imagery solarscan can train and evaluate on: a STAC catalog, its validation and importers.

This package never imports torch, ``models``, ``pipelines`` or ``app``.
"""

from .catalog import AddReport, Catalog
from .errors import CatalogError
from .items import Candidate, LabelKind, LabelledItem

__all__ = ["AddReport", "Candidate", "Catalog", "CatalogError", "LabelKind", "LabelledItem"]
