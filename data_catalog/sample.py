"""The small labelled sample that ships with solarscan (see sample/ATTRIBUTION.md for sources and licences)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


@dataclass(frozen=True)
class SampleChip:
    """One bundled chip with its tile-level label."""

    path: Path
    has_panels: bool
    gsd_m: float


def sample_chips() -> list[SampleChip]:
    """Every bundled chip with its label, in file-name order."""
    with (SAMPLE_DIR / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [SampleChip(SAMPLE_DIR / r["file"], r["has_panels"] == "1", float(r["gsd_m"])) for r in rows]


@dataclass(frozen=True)
class SampleScene:
    """The bundled scene: a mosaic of tiles, ``cell_px`` pixels square, ``panel_cells`` (row, column) with panels."""

    path: Path
    cell_px: int
    panel_cells: tuple[tuple[int, int], ...]


def sample_scene() -> SampleScene:
    """The bundled Fresno scene (``fresno_scene.tif``) and where its panels are (``fresno_scene.json``)."""
    described = json.loads((SAMPLE_DIR / "fresno_scene.json").read_text())
    return SampleScene(SAMPLE_DIR / "fresno_scene.tif", int(described["cell_px"]),
                       tuple((int(r), int(c)) for r, c in described["panel_cells"]))
