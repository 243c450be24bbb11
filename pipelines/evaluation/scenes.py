"""Judging a bundle on whole scenes, scored as ``solarscan score`` scores them: the product's real job.

The scenes of a catalog split are (1) seeded mosaics of its presence-labelled tiles (``pipelines.mosaics``) at 2 %
and 10 % panel cells, plus panel-free ones, and (2) its images with drawn labels as they are (the NREL scenes), plus
its panel-free images of those sources. Each is scored to a probability mask and judged at the pixel threshold:
panels are the 4-connected components of at least ``min_area_m2``, the least mean probability and the least
centred-window presence (the polygons scoring keeps; ``verified_masks``).

- mosaics: a cell is found when at least ``min_area_m2`` of panel lies in it; ``cell_recall`` over cells with
  panels, ``cell_precision`` over cells found; ``false_panels_per_km2``: panels centred in panel-free cells per
  km2 of them;
- drawn scenes: ``object_recall`` (labelled panels of >= ``OBJECT_MIN_PIXELS`` touched by a predicted panel),
  ``object_precision`` (predicted panels of that size touching a labelled panel), ``pixel_iou``;
- panel-free images: ``false_panels_per_km2``.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from data_catalog import Catalog, LabelledItem
from data_catalog.labels import load_mask
from data_catalog.rasters import open_raster
from pipelines.metrics import PixelCounter
from pipelines.mosaics import MOSAIC_CELLS, Mosaic, build_mosaics, mosaic_items
from pipelines.predictors import CONFIDENCE_THRESHOLD, PRESENCE_THRESHOLD, Predictor
from pipelines.prepared import VISIBLE_PLANT_MAX_YEAR, has_reliable_label
from pipelines.scenes import open_scene
from pipelines.scoring.job import score
from pipelines.scoring.options import ScoreOptions
from pipelines.scoring.vectorising import FOUR_CONNECTED, panel_pixels
from pipelines.scoring.verification import centred_presence, least_presence

log = logging.getLogger(__name__)

MOSAIC_SHARES = (0.02, 0.10)  # panel cells per mosaic set
PANEL_FREE_MOSAICS = 2
MOSAIC_SEED = 20  # mosaics are the same for every bundle and run
OBJECT_MIN_PIXELS = 20  # labelled and predicted panels smaller than this are not counted as objects


@dataclass(frozen=True)
class SceneCase:
    """One scene to score and what is known of it: a mosaic's cell labels, a drawn mask, or nothing (panel-free)."""

    path: Path
    source: str
    gsd_m: float  # of the image's own pixels
    mosaic: Mosaic | None = None
    item: LabelledItem | None = None  # an image with a drawn label, or a panel-free one

    @property
    def group(self) -> str:
        """The metric group: ``mosaic02`` (2 % panel cells), ``mosaic00`` (panel-free), or ``scene``."""
        return "scene" if self.mosaic is None else f"mosaic{round(self.mosaic.panel_share * 100):02d}"


def scene_cases(items: Sequence[LabelledItem], workdir: Path, shares: Iterable[float] = MOSAIC_SHARES,
                seed: int = MOSAIC_SEED) -> list[SceneCase]:
    """The scenes of a split's ``items``: mosaics of its tile source (``mosaic_items``), its images with drawn
    labels, and its panel-free images of sources that have drawn labels."""
    cases: list[SceneCase] = []
    tiles = mosaic_items(items)
    if tiles:
        source = tiles[0].source
        for k, share in enumerate([*shares, 0.0]):
            for mosaic in build_mosaics(tiles, workdir / "mosaics", share, seed + k, PANEL_FREE_MOSAICS,
                                        MOSAIC_CELLS):
                cases.append(SceneCase(mosaic.path, source, mosaic.gsd_m, mosaic=mosaic))
    drawn_sources = {i.source for i in items if i.label_kind != "presence"}
    for item in items:
        drawn = item.label_kind != "presence"
        if (drawn or (item.has_panels is False and item.source in drawn_sources)) and item.gsd_m is not None:
            cases.append(SceneCase(item.image_path, item.source, item.gsd_m, item=item))
    return cases


def score_cases(cases: Sequence[SceneCase], predictor: Predictor, workdir: Path,
                options: ScoreOptions | None = None) -> list[np.ndarray]:
    """Score every case with ``solarscan score`` (one batch per ground sample distance of unreferenced images)
    and return their uint8 probability masks, in order."""
    options = options or ScoreOptions()
    masks: list[np.ndarray | None] = [None] * len(cases)
    batches: dict[float, list[int]] = defaultdict(list)
    for k, case in enumerate(cases):
        batches[case.gsd_m].append(k)
    for n, (gsd, indexes) in enumerate(batches.items()):
        masks_dir = workdir / f"masks-{n}"
        run = replace(options, masks_dir=masks_dir, gsd_m=gsd, resume=False, tiles_csv=None, progress=False)
        paths = [cases[k].path for k in indexes]
        summary = score(paths, workdir / f"panels-{n}.parquet", run, predictor)
        if summary.failures:
            raise ValueError(f"scoring failed: {next(iter(summary.failures.values()))}")
        for k in indexes:
            mask = next(p for p in masks_dir.iterdir() if p.stem == cases[k].path.stem)
            with open_raster(mask) as src:
                masks[k] = src.read(1)
    return masks  # type: ignore[return-value]


def panel_components(probability: np.ndarray, threshold: float, min_pixels: float,
                     min_confidence: float = 0.0) -> tuple[np.ndarray, int]:
    """The panels scoring keeps where ``probability`` (uint8, as scoring writes it) reaches ``threshold``: its
    4-connected components (as ``rasterio.features.shapes`` outlines them) of at least ``min_pixels`` and a mean
    probability of at least ``min_confidence``. Returns (labels with 0 for background, count)."""
    labels, count = ndimage.label(panel_pixels(probability, threshold), structure=FOUR_CONNECTED)
    if count == 0:
        return labels, 0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sums = np.bincount(labels.ravel(), weights=probability.ravel() / 255.0, minlength=count + 1)
    keep = (sizes >= min_pixels) & (sums >= min_confidence * sizes)
    keep[0] = False
    renumbered = np.where(keep, np.cumsum(keep), 0)
    return renumbered[labels], int(keep.sum())


def component_centres(labels: np.ndarray, count: int) -> np.ndarray:
    """The (row, column) centre of mass of components 1..``count`` of ``labels``, (count, 2) float: as
    ``ndimage.center_of_mass`` gives them, from three bincounts instead of one pass per component."""
    flat = labels.ravel()
    rows, cols = labels.shape
    sizes = np.bincount(flat, minlength=count + 1)[1:]
    row_sums = np.bincount(flat, weights=np.repeat(np.arange(rows, dtype=np.float64), cols), minlength=count + 1)[1:]
    col_sums = np.bincount(flat, weights=np.tile(np.arange(cols, dtype=np.float64), rows), minlength=count + 1)[1:]
    return np.column_stack([row_sums, col_sums]) / sizes[:, None]


def panel_presence(cases: Sequence[SceneCase], masks: Sequence[np.ndarray], predictor: Predictor, threshold: float,
                   min_area_m2: float, batch_size: int = 8) -> list[np.ndarray]:
    """Per case, the centred-window presence (``centred_presence``) of each of its ``panel_components`` of at least
    ``min_area_m2`` at ``threshold``, judged at the component's centre and extent as scoring judges its polygon."""
    presence = []
    for case, mask in zip(cases, masks):
        labels, count = panel_components(mask, threshold, min_area_m2 / case.gsd_m**2)
        scene = open_scene(case.path, predictor.metadata.bands, case.gsd_m)
        # a pixel's centre lies half a pixel into it: (column, row) + 0.5 in the (x, y) of pixel polygons
        points = component_centres(labels, count)[:, ::-1] + 0.5
        boxes = ndimage.find_objects(labels)
        extents = np.array([(b[1].stop - b[1].start, b[0].stop - b[0].start) for b in boxes]).reshape(-1, 2)
        presence.append(centred_presence(scene, points, extents, predictor, batch_size))
    return presence


def verified_masks(cases: Sequence[SceneCase], masks: Sequence[np.ndarray], presence: Sequence[np.ndarray],
                   threshold: float, min_area_m2: float, min_presence: float) -> list[np.ndarray]:
    """The ``masks`` with every component whose ``panel_presence`` is under ``min_presence`` cleared, as scoring
    drops its polygon; the other components (and those not judged) are unchanged."""
    if min_presence <= 0:
        return list(masks)
    kept = []
    for case, mask, judged in zip(cases, masks, presence):
        labels, _ = panel_components(mask, threshold, min_area_m2 / case.gsd_m**2)
        dropped = np.concatenate([[False], judged < min_presence])
        kept.append(np.where(dropped[labels], np.uint8(0), mask))
    return kept


class MosaicCounter:
    """Cells found and missed over mosaics, and panels in panel-free cells."""

    def __init__(self) -> None:
        self.true_found = self.true = self.found = self.false_panels = 0
        self.free_km2 = 0.0

    def update(self, mosaic: Mosaic, probability: np.ndarray, threshold: float, min_pixels: float,
               min_confidence: float = 0.0) -> None:
        labels, count = panel_components(probability, threshold, min_pixels, min_confidence)
        n, px = mosaic.cells.shape[0], mosaic.cell_px
        cell_pixels = (labels[:n * px, :n * px] > 0).reshape(n, px, n, px).sum(axis=(1, 3))
        found = cell_pixels >= min_pixels
        self.true += int(mosaic.cells.sum())
        self.true_found += int((found & mosaic.cells).sum())
        self.found += int(found.sum())
        if count:
            cells = component_centres(labels, count).astype(int) // px
            inside = (cells[:, 0] < n) & (cells[:, 1] < n)
            self.false_panels += int((~mosaic.cells[cells[inside, 0], cells[inside, 1]]).sum())
        self.free_km2 += float((~mosaic.cells).sum()) * (px * mosaic.gsd_m) ** 2 / 1e6

    def scores(self) -> dict[str, float]:
        return {
            "cell_recall": self.true_found / self.true if self.true else math.nan,
            "cell_precision": self.true_found / self.found if self.found else math.nan,
            "false_panels_per_km2": self.false_panels / self.free_km2 if self.free_km2 else math.nan,
        }


class SceneCounter:
    """Objects found and false over scenes with drawn labels, their pixels, and panels on panel-free images."""

    def __init__(self) -> None:
        self.pixels = PixelCounter()
        self.true_found = self.true = self.predicted_right = self.predicted = self.false_panels = 0
        self.free_km2 = 0.0

    def update(self, case: SceneCase, probability: np.ndarray, threshold: float, min_pixels: float,
               min_confidence: float = 0.0) -> None:
        predicted, count = panel_components(probability, threshold, max(min_pixels, OBJECT_MIN_PIXELS),
                                            min_confidence)
        truth = load_mask(case.item) if case.item is not None and case.item.label_kind != "presence" else None
        if truth is None:  # a panel-free image
            self.false_panels += count
            self.free_km2 += probability.size * case.gsd_m**2 / 1e6
            return
        truth = truth.astype(bool)
        self.pixels.update(truth, panel_components(probability, threshold, min_pixels, min_confidence)[0] > 0)
        objects, n_true = panel_components(truth.astype(np.uint8) * 255, 0.5, OBJECT_MIN_PIXELS)
        self.true += n_true
        self.true_found += len(np.unique(objects[(objects > 0) & (predicted > 0)]))
        self.predicted += count
        self.predicted_right += len(np.unique(predicted[(predicted > 0) & truth]))

    def scores(self) -> dict[str, float]:
        scores = {
            "object_recall": self.true_found / self.true if self.true else math.nan,
            "object_precision": self.predicted_right / self.predicted if self.predicted else math.nan,
            "pixel_iou": self.pixels.scores()["iou"],
        }
        if self.free_km2:
            scores["false_panels_per_km2"] = self.false_panels / self.free_km2
        return scores


def judge_cases(cases: Sequence[SceneCase], masks: Sequence[np.ndarray], threshold: float,
                min_area_m2: float, min_confidence: float = 0.0) -> dict[str, float]:
    """Scene metrics ``<source>/<group>_<name>`` of the scored ``masks`` at pixel ``threshold``, counting the
    panels scoring keeps (``panel_components``)."""
    counters: dict[tuple[str, str], MosaicCounter | SceneCounter] = {}
    for case, mask in zip(cases, masks):
        min_pixels = min_area_m2 / case.gsd_m**2
        key = (case.source, case.group)
        if case.mosaic is not None:
            counter = counters.setdefault(key, MosaicCounter())
            counter.update(case.mosaic, mask, threshold, min_pixels, min_confidence)
        else:
            counter = counters.setdefault(key, SceneCounter())
            counter.update(case, mask, threshold, min_pixels, min_confidence)
    metrics = {}
    for (source, group), counter in sorted(counters.items()):
        for name, value in counter.scores().items():
            if group == "mosaic00" and name != "false_panels_per_km2":
                continue  # panel-free mosaics have no cells to find
            metrics[f"{source}/{group}_{name}"] = value
    return metrics


def scene_objective(metrics: dict[str, float]) -> float:
    """One figure to choose thresholds by: the mean of the F1 of mosaic cells (each share) and of scene objects and
    of the pixel IoU of scenes with drawn labels (so that a threshold buys no detections with worse outlines)."""
    terms = [v for k, v in metrics.items() if k.endswith("_pixel_iou")]
    for key, recall in metrics.items():
        for kind in ("cell", "object"):
            if key.endswith(f"_{kind}_recall"):
                precision = metrics.get(key.replace("_recall", "_precision"), math.nan)
                total = recall + precision
                terms.append(2 * recall * precision / total if total > 0 else 0.0)
    terms = [t for t in terms if not math.isnan(t)]
    return float(np.mean(terms)) if terms else math.nan


def split_cases(catalog_dir: Path, split: str, workdir: Path) -> list[SceneCase]:
    """The scene cases of a catalog split (mosaics written under ``workdir``)."""
    items = Catalog.open(catalog_dir).items(split)
    # the same scenes for every bundle, whatever year its training took weak positives up to
    cases = scene_cases([i for i in items if has_reliable_label(i, VISIBLE_PLANT_MAX_YEAR)], workdir)
    if not cases:
        raise ValueError(f"catalog {catalog_dir} split {split!r} holds no tiles to lay in mosaics and no images "
                         "with drawn labels")
    return cases


def evaluate_scenes(catalog_dir: Path, predictor: Predictor, split: str = "test",
                    options: ScoreOptions | None = None) -> dict[str, Any]:
    """Scene metrics of ``predictor`` on a split's scenes, scored with ``options`` and judged at their pixel
    thresholds (the predictor's where None). Returns ``{"model", "split", "items", "data_version", "thresholds",
    "metrics", "objective", "seconds"}`` (``items``: scenes scored; ``seconds``: scoring them)."""
    options = options or ScoreOptions()
    thresholds = predictor.metadata.thresholds
    threshold = thresholds["pixel"] if options.threshold is None else options.threshold
    confidence = thresholds.get(CONFIDENCE_THRESHOLD, 0.0) if options.min_confidence is None \
        else options.min_confidence
    min_presence = least_presence(predictor, options.min_presence)
    with tempfile.TemporaryDirectory(prefix="solarscan-scenes-") as work:
        cases = split_cases(catalog_dir, split, Path(work))
        start = time.perf_counter()
        # verified here, on the masks, rather than twice
        masks = score_cases(cases, predictor, Path(work), replace(options, min_presence=0.0))
        if min_presence > 0:
            presence = panel_presence(cases, masks, predictor, threshold, options.min_area_m2, options.batch_size)
            masks = verified_masks(cases, masks, presence, threshold, options.min_area_m2, min_presence)
        seconds = time.perf_counter() - start
    metrics = judge_cases(cases, masks, threshold, options.min_area_m2, confidence)
    return {"model": predictor.name, "split": split, "items": len(cases),
            "data_version": Catalog.open(catalog_dir).version,
            "thresholds": {"pixel": threshold, CONFIDENCE_THRESHOLD: confidence, PRESENCE_THRESHOLD: min_presence},
            "metrics": metrics, "objective": scene_objective(metrics), "seconds": seconds}
