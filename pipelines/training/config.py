"""The configuration of a training run (plain values, no torch): what ``solarscan train`` builds and records."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.options import checked_values
from pipelines.prepared import VISIBLE_PLANT_MAX_YEAR


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; recorded in the run folder as ``config.json``."""

    catalog: Path
    out: Path
    architecture: str = "panelnet_res2netplus50"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: Path | None = None
    epochs: int = 30
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    tile_size: int = 96
    scoring_tile_size: int | None = None  # tiles the bundle scores at; None: ``scoring_tile_size(tile_size)``
    gsd_m: float = 0.3
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    mixup_rate: float = 0.25
    copy_paste_rate: float = 0.0
    pixel_loss_weight: float = 1.0
    # > 0: items labelled only "has panels" teach the decoder too, as multiple-instance bags (relative to pixels)
    bag_loss_weight: float = 0.0
    # > 0: this share of crops is cut from random mosaics of the presence-labelled tiles (panel-free cells are
    # known empty masks, each panel cell a bag of its own; needs bag_loss_weight > 0), so the detector learns
    # lone arrays among other roofs as scenes show them
    mosaic_rate: float = 0.0
    # > 0 (with init_from): pixel maps are also pulled towards the starting model's, so that fine-tuning on new
    # tiles keeps what the model segmented before (distillation, as in "learning without forgetting")
    distill_weight: float = 0.0
    # BatchNorms normalise with, and keep, their running statistics (fine-tuning: a new mix of sources then cannot
    # re-estimate the statistics every other source is normalised with)
    freeze_norm_statistics: bool = False
    # the encoder and tile classifier keep the starting bundle's weights and BatchNorm statistics and only the
    # decoder learns (a new, lighter decoder under a trusted encoder: no gradients through the encoder)
    freeze_encoder: bool = False
    patience: int = 8
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    workers: int = 0
    seed: int = 0
    resume: bool = False
    weak_positive_max_year: int | None = VISIBLE_PLANT_MAX_YEAR
    source_weights: dict[str, float] = field(default_factory=dict)  # draw-weight factor per source (default 1)
    ema_decay: float | None = None  # validate and keep an exponential moving average of the weights
    # also keep every epoch's model as epoch<N>.safetensors (with its own tile threshold), to choose among them on
    # whole scenes (``solarscan evaluate --scenes``) rather than by the lone-chip validation score
    keep_epochs: bool = False

    def __post_init__(self) -> None:
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.bag_loss_weight < 0:
            raise ValueError(f"bag_loss_weight must be >= 0, got {self.bag_loss_weight}")
        if not 0 <= self.mosaic_rate <= 1:
            raise ValueError(f"mosaic_rate must be in [0, 1], got {self.mosaic_rate}")
        if self.mosaic_rate > 0 and self.bag_loss_weight <= 0:
            raise ValueError("mosaic_rate needs bag_loss_weight > 0: a mosaic's panel cells teach the decoder as bags")
        if self.distill_weight < 0:
            raise ValueError(f"distill_weight must be >= 0, got {self.distill_weight}")
        if self.distill_weight > 0 and self.init_from is None:
            raise ValueError("distill_weight needs init_from: the starting model is the one distilled from")
        if self.freeze_encoder and self.init_from is None:
            raise ValueError("freeze_encoder needs init_from: a fresh encoder that cannot learn finds nothing")
        if any(not w > 0 for w in self.source_weights.values()):
            raise ValueError(f"source_weights must be positive, got {self.source_weights}")
        if self.scoring_tile_size is not None and (self.scoring_tile_size < 32 or self.scoring_tile_size % 32):
            raise ValueError(
                f"scoring_tile_size must be a positive multiple of 32 (the model's grid), got {self.scoring_tile_size}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from plain values (paths as strings are fine); unknown keys are an error."""
        return cls(**checked_values(cls, values, ("catalog", "out", "init_from"), ValueError, "training"))

    def to_json(self) -> str:
        """The configuration as JSON (paths as strings)."""
        return json.dumps(dataclasses.asdict(self), default=str, indent=2, sort_keys=True)
