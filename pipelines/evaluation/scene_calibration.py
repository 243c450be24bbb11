"""Choosing a bundle's pixel and gate thresholds on whole validation scenes, scored as ``solarscan score`` scores.

Lone chips reward a gate that a scene's lone array never passes; scenes are what the thresholds serve. The pixel
threshold and the least polygon confidence (mean probability) are the pair of best ``scene_objective`` on the
scenes scored without the gate; the least centred-window presence (``verification``) is then the best of
``PRESENCE_CANDIDATES`` at that pair, and the confidence is chosen again beside it. The gate threshold is last: the
highest of ``GATE_CANDIDATES`` whose gated scoring keeps the objective within ``GATE_TOLERANCE``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models import load_bundle, rewrite_metadata
from pipelines.evaluation.calibration import PIXEL_CANDIDATES
from pipelines.evaluation.scenes import (
    judge_cases,
    panel_presence,
    scene_objective,
    score_cases,
    split_cases,
    verified_masks,
)
from pipelines.folders import check_writable_folder
from pipelines.predictors import CONFIDENCE_THRESHOLD, GATE_THRESHOLD, PRESENCE_THRESHOLD, predictor_for
from pipelines.runtime import Runtime
from pipelines.scoring.options import ScoreOptions

log = logging.getLogger(__name__)

GATE_CANDIDATES = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)
CONFIDENCE_CANDIDATES = (0.0, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
PRESENCE_CANDIDATES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
GATE_TOLERANCE = 0.005  # the gated scene objective may fall this far below the ungated one


def calibrate_scenes(catalog_dir: Path, bundle_path: Path, split: str = "val", out: Path | None = None,
                     device: str = "auto", precision: str = "auto") -> dict[str, Any]:
    """Choose the pixel and gate thresholds on ``split``'s scenes and write them into the bundle (``out``, default
    in place). Returns ``{"model", "split", "scenes", "thresholds", "scores"}``, also recorded in the bundle's
    metrics under ``calibration_scenes``."""
    check_writable_folder(Path(out or bundle_path).resolve().parent, "the calibrated bundle (--out)")
    bundle = load_bundle(bundle_path)
    runtime = Runtime.resolve(device, precision)
    options = ScoreOptions(compile="off", progress=False, min_presence=0.0)  # verified on the masks
    with tempfile.TemporaryDirectory(prefix="solarscan-calibrate-") as work:
        cases = split_cases(catalog_dir, split, Path(work))
        plain = predictor_for(bundle, runtime, gate=False, compile="off")
        ungated = score_cases(cases, plain, Path(work) / "all", replace(options, gate=False))
        by_pair = {(float(t), c): scene_objective(judge_cases(cases, ungated, float(t), options.min_area_m2, c))
                   for t in PIXEL_CANDIDATES for c in CONFIDENCE_CANDIDATES if c == 0 or c > t}
        if all(math.isnan(v) for v in by_pair.values()):
            raise ValueError(f"the scenes of split {split!r} of {catalog_dir} have no panels to find; cannot choose "
                             "thresholds on them")
        # of equal scores, the pixel threshold nearest 0.5 and the least confidence cut
        pixel, confidence = max(by_pair, key=lambda k: (by_pair[k], -abs(k[0] - 0.5), -k[1]))

        def objective(masks: list[np.ndarray], presence: list[np.ndarray], at_presence: float,
                      at_confidence: float) -> float:
            kept = verified_masks(cases, masks, presence, pixel, options.min_area_m2, at_presence)
            return scene_objective(judge_cases(cases, kept, pixel, options.min_area_m2, at_confidence))

        judged = panel_presence(cases, ungated, plain, pixel, options.min_area_m2, options.batch_size)
        by_presence = {p: objective(ungated, judged, p, confidence) for p in PRESENCE_CANDIDATES}
        least = max(by_presence, key=lambda p: (by_presence[p], -p))  # of equal scores the least cut
        by_confidence = {c: objective(ungated, judged, least, c)
                         for c in CONFIDENCE_CANDIDATES if c == 0 or c > pixel}
        confidence = max(by_confidence, key=lambda c: (by_confidence[c], -c))
        best = by_confidence[confidence]
        gate, gated_score = 0.0, best
        for candidate in GATE_CANDIDATES:
            predictor = predictor_for(bundle, runtime, gate=True, gate_threshold=candidate, compile="off")
            masks = score_cases(cases, predictor, Path(work) / f"gate-{candidate}", options)
            judged = panel_presence(cases, masks, plain, pixel, options.min_area_m2, options.batch_size) \
                if least > 0 else []
            score = objective(masks, judged, least, confidence)
            log.info("gate %.2f: scene objective %.4f (ungated %.4f)", candidate, score, best)
            if score >= best - GATE_TOLERANCE:
                gate, gated_score = candidate, score
                break
    thresholds = {"pixel": pixel, CONFIDENCE_THRESHOLD: confidence, PRESENCE_THRESHOLD: least, GATE_THRESHOLD: gate}
    scores = {"objective_ungated": best, "objective_gated": gated_score,
              "objective_by_presence": {f"{p:.2f}": v for p, v in by_presence.items()},
              "objective_by_pixel_threshold": {f"{t:.2f}": by_pair[(t, 0.0)] for t, c in by_pair if c == 0}}
    metadata = bundle.metadata
    metadata.thresholds = {**metadata.thresholds, **thresholds}
    report = {"model": str(bundle_path), "split": split, "scenes": len(cases), "thresholds": thresholds,
              "scores": scores}
    metadata.metrics = {**metadata.metrics, "calibration_scenes": {k: v for k, v in report.items() if k != "model"}}
    rewrite_metadata(bundle_path, metadata, out)
    return report
