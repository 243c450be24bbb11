"""How to score a batch: the options every scoring stage reads, in a module of their own so that the stages
(units, executors) and the job that runs them all import it and none imports its caller."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.acceleration import COMPILE_POLICIES
from pipelines.errors import ScoringConfigError
from pipelines.options import checked_values
from pipelines.predictors import Predictor, load_predictor
from pipelines.tiling import DEFAULT_OVERLAP

EXECUTORS = ("local", "ray")  # where scoring units run: this process, or a Ray cluster


@dataclass(frozen=True)
class ScoreOptions:
    """How to score a batch. ``None`` thresholds fall back to the model bundle's."""

    model: Path | None = None  # model bundle; the shipped one when None
    tiles_csv: Path | None = None  # per-image CSV: path, panel_probability, has_panels
    masks_dir: Path | None = None  # per-image uint8 probability rasters on the input's grid
    gsd_m: float | None = None  # ground sample distance of inputs without a CRS
    bit_depth: int | None = None  # bits of data in integer inputs (12: full brightness at 4095); None: as declared
    device: str = "auto"
    precision: str = "auto"
    compile: str = "auto"  # compiled encoder: 'auto' (jobs big enough to pay for it, or compiled before), 'on', 'off'
    batch_size: int = 8
    workers: int | None = None  # threads reading ahead of the model; None: 0 on a CPU, 2 beside a GPU
    threshold: float | None = None  # pixel probability threshold for panels
    gate: bool = True  # skip the decoder on tiles the classifier calls empty
    gate_threshold: float | None = None  # default: half the bundle's tile threshold
    tta: bool = False  # each segmented tile's pixel map averaged over its eight flips and quarter turns
    overlap: float = DEFAULT_OVERLAP  # tile overlap as a fraction of the classifier window (``tiling``)
    min_area_m2: float = 1.0  # smaller polygons are speckle
    min_confidence: float | None = None  # polygons of lower mean probability are dropped; None: the bundle's (or 0)
    min_presence: float | None = None  # polygons whose centred window the classifier rates lower are dropped;
    # None: the bundle's (or 0: not judged)
    simplify_px: float = 0.5  # simplification tolerance in source pixels (0: none)
    regularise: bool = False  # square up polygons that fit their minimum rotated rectangle
    resume: bool = True  # skip scenes already finished for this output
    progress: bool | None = None  # progress bars; None: when stderr is a terminal
    executor: str = "local"  # "local" (this process) or "ray" (a Ray cluster)
    ray_address: str | None = None  # Ray cluster to join ("auto": this node's); None: a running or new one
    num_gpus_per_worker: float = 0  # GPUs (or a fraction of one) for each Ray model worker; 0: CPU workers

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {value}"
            for name, value, ok, rule in [
                ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
                ("workers", self.workers, self.workers is None or self.workers >= 0, ">= 0"),
                ("overlap", self.overlap, 0 <= self.overlap < 1, "in [0, 1)"),
                ("min_area_m2", self.min_area_m2, self.min_area_m2 >= 0, ">= 0"),
                (
                    "min_confidence",
                    self.min_confidence,
                    self.min_confidence is None or 0 <= self.min_confidence <= 1,
                    "in [0, 1]",
                ),
                (
                    "min_presence",
                    self.min_presence,
                    self.min_presence is None or 0 <= self.min_presence <= 1,
                    "in [0, 1]",
                ),
                ("simplify_px", self.simplify_px, self.simplify_px >= 0, ">= 0"),
                ("gsd_m", self.gsd_m, self.gsd_m is None or self.gsd_m > 0, "> 0"),
                ("bit_depth", self.bit_depth, self.bit_depth is None or 1 <= self.bit_depth <= 16, "in 1-16"),
                ("compile", self.compile, self.compile in COMPILE_POLICIES, "auto, on or off"),
                ("executor", self.executor, self.executor in EXECUTORS, f"one of {', '.join(EXECUTORS)}"),
                ("num_gpus_per_worker", self.num_gpus_per_worker, self.num_gpus_per_worker >= 0, ">= 0"),
                ("threshold", self.threshold, self.threshold is None or 0 < self.threshold <= 1, "in (0, 1]"),
                (
                    "gate_threshold",
                    self.gate_threshold,
                    self.gate_threshold is None or 0 <= self.gate_threshold <= 1,
                    "in [0, 1]",
                ),
            ]
            if not ok
        ]
        if problems:
            raise ScoringConfigError("invalid scoring options: " + "; ".join(problems))

    def load_predictor(self) -> Predictor:
        """The predictor these options ask for: their bundle on their device and precision, with their gate,
        compile policy and test-time augmentation."""
        return load_predictor(self.model, self.device, self.precision, self.gate, self.gate_threshold, self.compile,
                              self.tta)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreOptions:
        """Options from a mapping (e.g. a JSON request); unknown keys are rejected."""
        return cls(**checked_values(cls, data, ("model", "tiles_csv", "masks_dir"), ScoringConfigError, "scoring"))
