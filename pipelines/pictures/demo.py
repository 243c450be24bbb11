"""The demo job: score the bundled sample chips with the bundled model and draw the result."""

from __future__ import annotations

import csv
from pathlib import Path

import geopandas as gpd

from data_catalog.sample import sample_chips, sample_scene
from models import read_metadata
from pipelines.errors import ScoringConfigError
from pipelines.folders import check_writable_folder
from pipelines.pictures.contact_sheet import render_contact_sheet
from pipelines.predictors import default_bundle_path
from pipelines.scoring.job import ScoreSummary, score
from pipelines.scoring.options import ScoreOptions

CAPTION = "Imagery: (c) swisstopo (Bern chips); USGS, public domain (Fresno tiles). Red: detected panels."
SCENE_CAPTION = ("Imagery: USGS, public domain (8 x 8 Fresno tiles). Red: detected panels; dashed yellow: the "
                 "tiles labelled as holding panels.")


def run_demo(out_dir: Path, model: Path | None = None) -> ScoreSummary:
    """Write ``panels.geojson``, ``tiles.csv``, ``masks/``, ``contact_sheet.png`` (the chips) and ``scene.png``
    (the bundled scene) into ``out_dir``."""
    check_writable_folder(out_dir, "the demo output (--out)", ScoringConfigError)
    chips, scene = sample_chips(), sample_scene()
    gsd = {c.gsd_m for c in chips if c.path.suffix == ".png"}
    options = ScoreOptions(
        model=model, tiles_csv=out_dir / "tiles.csv", masks_dir=out_dir / "masks",
        gsd_m=gsd.pop() if len(gsd) == 1 else None, resume=False,
    )
    summary = score([c.path for c in chips] + [scene.path], out_dir / "panels.geojson", options)
    panels = gpd.read_file(out_dir / "panels.geojson")
    with (out_dir / "tiles.csv").open(newline="") as f:
        probabilities = {row["path"]: float(row["panel_probability"]) for row in csv.DictReader(f)}
    render_contact_sheet(
        [c.path for c in chips], panels, out_dir / "contact_sheet.png", probabilities,
        masks_dir=out_dir / "masks", threshold=read_metadata(model or default_bundle_path()).thresholds["pixel"],
        caption=CAPTION,
    )
    px = scene.cell_px
    cells = [(r * px, c * px, (r + 1) * px, (c + 1) * px) for r, c in scene.panel_cells]
    render_contact_sheet([scene.path], panels, out_dir / "scene.png", caption=SCENE_CAPTION, columns=1,
                         display_px=8 * px, known={str(scene.path): cells})
    return summary

