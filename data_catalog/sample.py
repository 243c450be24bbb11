"""The small labelled sample that ships with solarscan (see sample/ATTRIBUTION.md for sources and licences)."""

from __future__ import annotations

import csv
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
