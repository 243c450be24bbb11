"""Units of scoring work: a whole scene, or a strip of its rows, scored on its own and joined exactly.

A strip owns a range of source rows made of whole vectorising strips. It scores every tile touching those rows
(plus a resampling margin), in the same batches as a whole-scene run, so the blended probability over its rows
is bit for bit the whole-scene one; joining the strips' polygons across seams then gives the same panels.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import compress, pairwise
from pathlib import Path

import geopandas as gpd
import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from models import BundleMetadata
from pipelines.errors import EmptySceneError, SceneReadError, ScoringError
from pipelines.predictors import CONFIDENCE_THRESHOLD, Predictor
from pipelines.scenes import Scene, scene_key
from pipelines.scoring.attributes import panel_set
from pipelines.scoring.blending import StripBlender, hann_weights
from pipelines.scoring.heap import release_free_memory
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.probability import MaskWriter, ModelGridProbability
from pipelines.scoring.reading import SceneReader, gdal_cache_env, iter_batches
from pipelines.scoring.vectorising import PixelPolygons, StripVectoriser, join_across_seams, outline, select
from pipelines.scoring.verification import least_presence, verify
from pipelines.tiling import Tile, batch_tiles, model_grid, scene_tiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringUnit:
    """Source rows ``rows`` of a scene, scored from tiles ``tiles``; it reports the statistics of ``owned``.

    Tile ranges are indexes into the scene's row-major tile grid, end exclusive. The owned ranges of a
    scene's units partition its tiles; the scored ranges overlap so every owned row sees all its tiles.
    """

    scene: Scene
    index: int  # position among the scene's units
    count: int  # units the scene is split into
    rows: tuple[int, int]  # source rows [start, stop) this unit vectorises
    strip_rows: int  # source rows per vectorising strip
    tile_size: int  # model pixels per tile side (``scene_tile_size``)
    tiles: tuple[int, int]  # tiles scored
    owned: tuple[int, int]  # tiles counted by this unit
    scene_tiles: int  # tiles of the whole scene

    @property
    def owned_tiles(self) -> int:
        return self.owned[1] - self.owned[0]

    @property
    def scored_tiles(self) -> int:
        return self.tiles[1] - self.tiles[0]

    @property
    def seams(self) -> list[int]:
        """First rows of this unit's vectorising strips, except the scene's first row."""
        return [row for row in range(*self.rows, self.strip_rows) if row > 0]

    def describe(self) -> str:
        whole = self.count == 1
        return f"{self.scene.path}" if whole else f"{self.scene.path} rows {self.rows[0]}-{self.rows[1]}"


def tiles_by_size(units: Iterable[ScoringUnit]) -> dict[int, int]:
    """The tiles the units score, counted per tile size (what a predictor plans a job by)."""
    counts: Counter[int] = Counter()
    for unit in units:
        counts[unit.tile_size] += unit.scored_tiles
    return counts


@dataclass(frozen=True)
class UnitResult:
    """What scoring one unit produced: its polygons not yet joined across seams, and tile statistics."""

    unit: ScoringUnit
    polygons: PixelPolygons
    tile_probability: float  # max classifier probability over owned tiles
    scored_tiles: int  # owned tiles with valid pixels
    segmented_tiles: int  # owned tiles the decoder ran on
    mask_path: Path | None


@dataclass(frozen=True)
class SceneResult:
    """What scoring one scene produced."""

    scene: Scene
    panels: gpd.GeoDataFrame  # PanelSet in the scene's CRS (pixel coordinates without one)
    tile_probability: float  # max classifier probability over the scene's tiles
    has_panels: bool
    tiles: int
    tiles_segmented: int
    mask_path: Path | None


@dataclass(frozen=True)
class UnitOutcome:
    """A unit's result, or why it failed."""

    unit: ScoringUnit
    result: UnitResult | None
    failure: str | None = None


def plan_units(
    scene: Scene,
    metadata: BundleMetadata,
    options: ScoreOptions,
    strip_pixels: int,
    max_tiles: int | None,
) -> list[ScoringUnit]:
    """Split ``scene`` into strips of about ``max_tiles`` tiles each (one unit when None or small enough)."""
    grid = model_grid(scene, metadata.gsd_m)
    tiles = scene_tiles(grid, metadata.tile_size, options.overlap)
    size = tiles[0].size
    tile_rows = np.array([t.row for t in tiles])
    n_tiles = len(tile_rows)
    strip_rows = max(1, strip_pixels // scene.width)
    strips = list(range(0, scene.height, strip_rows))
    count = 1 if max_tiles is None else min(len(strips), max(1, math.ceil(n_tiles / max_tiles)))
    bounds = [strips[i * len(strips) // count] for i in range(count)] + [scene.height]
    # Model rows the bilinear read of a source strip may touch beyond the strip itself.
    margin = math.ceil(2 * max(1.0, 1 / grid.scale_y)) + 1
    batch = batch_tiles(options.batch_size, size, metadata.tile_size)

    def model_row(source_row: int) -> int:
        return grid.height if source_row >= scene.height else math.floor(source_row / grid.scale_y)

    units = []
    for index, (start, stop) in enumerate(pairwise(bounds)):
        needed = (
            max(0, model_row(start) - margin),
            min(grid.height, math.ceil(stop / grid.scale_y) + margin),
        )
        first = int(np.searchsorted(tile_rows, needed[0] - size, side="right"))
        last = int(np.searchsorted(tile_rows, needed[1], side="left"))
        units.append(
            ScoringUnit(
                scene=scene,
                index=index,
                count=count,
                rows=(start, stop),
                strip_rows=strip_rows,
                tile_size=size,
                # Whole batches of the scene's tile sequence, so each tile meets the same batch-mates.
                tiles=(first // batch * batch, min(n_tiles, -(-last // batch) * batch)),
                owned=(
                    int(np.searchsorted(tile_rows, model_row(start))),
                    int(np.searchsorted(tile_rows, model_row(stop))),
                ),
                scene_tiles=n_tiles,
            )
        )
    return units


def reader_threads(options: ScoreOptions, predictor: Predictor) -> int:
    """Threads reading tiles ahead of the model: ``options.workers``, or by default none on a CPU and two beside a
    GPU. On a CPU the model's own threads already keep every core busy and readers only compete with them
    (measured on 2 cores, 10k px scene: the model stage took 9 % longer beside two readers, and the job's wall time
    was within 5 % either way); beside a GPU the cores are otherwise idle."""
    if options.workers is not None:
        return options.workers
    runtime = getattr(predictor, "runtime", None)  # a Predictor need not run on a torch device
    return 2 if runtime is not None and runtime.device.type == "cuda" else 0


def score_unit(
    unit: ScoringUnit,
    predictor: Predictor,
    options: ScoreOptions,
    workdir: Path,
    progress: Callable[[int], None] | None = None,
) -> UnitResult:
    """Score one unit: its tiles -> predictor -> blended probability -> polygons of its rows.

    ``workdir`` holds the temporary model-grid probability raster; ``progress`` is told how many owned tiles are done.
    """
    scene, meta = unit.scene, predictor.metadata
    grid = model_grid(scene, meta.gsd_m)
    tiles = scene_tiles(grid, meta.tile_size, options.overlap)[slice(*unit.tiles)]
    weights = hann_weights(unit.tile_size)
    threshold = meta.thresholds["pixel"] if options.threshold is None else options.threshold
    tile_probability, segmented, scored, any_scored = 0.0, 0, 0, False
    top = tiles[0].row
    bottom = min(grid.height, tiles[-1].row + unit.tile_size)
    key = scene_key(scene.path)
    vectoriser = StripVectoriser(threshold)
    mask_path = None
    with ExitStack() as stack:
        stack.enter_context(gdal_cache_env())
        reader = stack.enter_context(SceneReader(scene, grid, meta.norm_mean, meta.norm_std))
        store = stack.enter_context(ModelGridProbability(workdir / f"{key}.model-grid.tif", grid))
        blender = StripBlender(
            bottom - top, grid.width, unit.tile_size, lambda row, p: store.write_rows(top + row, p)
        )
        index = unit.tiles[0]
        per_batch = batch_tiles(options.batch_size, unit.tile_size, meta.tile_size)
        for batch in iter_batches(reader, tiles, per_batch, reader_threads(options, predictor)):
            positions = np.arange(index, index + len(batch.tiles))
            owned = (positions >= unit.owned[0]) & (positions < unit.owned[1])
            index += len(batch.tiles)
            keep = batch.valid.any(axis=(1, 2))  # tiles wholly nodata or padding are not scored
            if keep.any():
                scores = predictor.predict(batch.pixels[keep])
                mine = owned[keep]
                tile_probability = max(
                    tile_probability, float(scores.tile_probability[mine].max(initial=0.0))
                )
                segmented += int(scores.segmented[mine].sum())
                scored += int(mine.sum())
                any_scored = True
                for tile, valid, probability in zip(
                    compress(batch.tiles, keep), batch.valid[keep], scores.pixel_probability
                ):
                    blender.add(_shifted(tile, top), probability, weights * valid)
            if progress is not None:
                progress(int(owned.sum()))
        if any_scored:  # otherwise every pixel is invalid: no panels, and an empty scene writes no mask
            blender.close()
            masks = MaskWriter(scene, options.masks_dir) if options.masks_dir is not None else None
            finished = False
            try:
                for row in range(*unit.rows, unit.strip_rows):
                    rows = min(unit.strip_rows, scene.height - row)
                    probability = store.read_source_rows(scene, row, rows)
                    # nodata is never a panel
                    probability[~reader.read_valid(Window(0, row, scene.width, rows))] = 0
                    if masks is not None:
                        masks.write_rows(row, probability)
                    vectoriser.add(row, probability)
                    release_free_memory()
                finished = True
            finally:
                if masks is not None:
                    masks.close(keep=finished)
            mask_path = masks.path if masks is not None else None
    if (warning := reader.dim_range_warning()) is not None:
        log.warning(warning)
    return UnitResult(unit, vectoriser.polygons(), tile_probability, scored, segmented, mask_path)


def join_units(results: Sequence[UnitResult], predictor: Predictor, options: ScoreOptions) -> SceneResult:
    """One scene's unit results (all of them) -> its panels, joined across every strip seam."""
    results = sorted(results, key=lambda r: r.unit.index)
    unit = results[0].unit
    scene = unit.scene
    if sum(r.scored_tiles for r in results) == 0:
        raise EmptySceneError(
            f"{scene.path}: has no valid pixel (empty, all nodata or transparent); nothing to score"
        )
    polygons = join_across_seams(
        PixelPolygons.concatenate([r.polygons for r in results]),
        np.asarray([row for r in results for row in r.unit.seams], dtype=float),
    )
    pixel_area = scene.gsd_m[0] * scene.gsd_m[1]
    min_confidence = predictor.metadata.thresholds.get(CONFIDENCE_THRESHOLD, 0.0) if options.min_confidence is None \
        else options.min_confidence
    polygons = select(polygons, options.min_area_m2 / pixel_area, min_confidence)
    polygons, presence = verify(polygons, scene, predictor, least_presence(predictor, options.min_presence),
                                options.batch_size)
    polygons = outline(polygons, options.simplify_px, options.regularise)
    tile_probability = max(r.tile_probability for r in results)
    return SceneResult(
        scene=scene,
        panels=panel_set(polygons, scene, predictor.name, presence),
        tile_probability=tile_probability,
        has_panels=tile_probability >= predictor.metadata.thresholds["tile"],
        tiles=unit.scene_tiles,
        tiles_segmented=sum(r.segmented_tiles for r in results),
        mask_path=results[0].mask_path,
    )


def gather_scenes(outcomes: Iterable[UnitOutcome]) -> Iterator[tuple[Scene, list[UnitResult] | str]]:
    """Group unit outcomes (in any order) by scene: all its results once complete, or its first failure."""
    pending: dict[Path, list[UnitOutcome]] = {}
    for outcome in outcomes:
        unit = outcome.unit
        arrived = pending.setdefault(unit.scene.path, [])
        arrived.append(outcome)
        if len(arrived) < unit.count:
            continue
        del pending[unit.scene.path]
        arrived.sort(key=lambda o: o.unit.index)
        failures = [o.failure for o in arrived if o.failure is not None]
        yield unit.scene, failures[0] if failures else [o.result for o in arrived]


def scoring_failure(unit: ScoringUnit, exc: Exception) -> str | None:
    """Why ``unit`` failed if ``exc`` is a problem with its input (not worth retrying); None otherwise."""
    if isinstance(exc, ScoringError):
        return str(exc)
    if isinstance(exc, RasterioError):
        return str(SceneReadError(f"{unit.scene.path}: {exc}"))
    return None


def _shifted(tile: Tile, rows: int) -> Tile:
    """``tile`` with its row counted from model row ``rows``."""
    return dataclasses.replace(tile, row=tile.row - rows)
