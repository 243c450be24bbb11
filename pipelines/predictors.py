"""Predictors turn a batch of normalised tiles into tile and pixel panel probabilities.

The trained detector is one implementation (``ModelPredictor``); anything with the same interface can score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

import models
from models import Bundle, BundleMetadata, BundleNotFoundError, ModelError, load_bundle
from pipelines.acceleration import (
    compile_pays,
    compiled_encoder,
    encoder_digest,
    inference_copy,
    package_path,
)
from pipelines.dihedral import dihedral_mean
from pipelines.errors import ModelNotFoundError, ScoringConfigError
from pipelines.runtime import Runtime
from pipelines.tiling import SIZE_STEP, batch_tiles, presence_window
from pipelines.timing import stage

log = logging.getLogger(__name__)

DEFAULT_BUNDLE_NAME = "solarscan-res2netplus50.safetensors"
# Without a gate threshold chosen on scenes (``solarscan calibrate --scenes``), the decoder runs on tiles whose
# panel probability reaches this fraction of the bundle's tile threshold, so the gate only skips tiles the
# classifier is sure about.
GATE_FRACTION = 0.5
GATE_THRESHOLD = "gate"  # the bundle's threshold for running the decoder on a tile, chosen on scenes
CONFIDENCE_THRESHOLD = "confidence"  # the bundle's least mean probability of a kept polygon, chosen on scenes
PRESENCE_THRESHOLD = "presence"  # the bundle's least classifier probability of a window centred on a kept polygon
TTA_PIXEL_THRESHOLD = "pixel_tta"  # the bundle's pixel threshold chosen for scoring with test-time augmentation


@dataclass(frozen=True)
class TileScores:
    """Per tile: panel probability from the classifier, and a pixel probability map (zeros where not segmented)."""

    tile_probability: np.ndarray  # (N,) float32
    pixel_probability: np.ndarray  # (N, H, W) float32
    segmented: np.ndarray  # (N,) bool: whether the decoder ran for that tile


class Predictor(Protocol):
    """Scores batches of tiles prepared as ``metadata`` describes (bands, normalisation, ground sample distance)."""

    metadata: BundleMetadata
    name: str  # model name and version, written on every polygon

    def predict(self, batch: np.ndarray) -> TileScores:
        """Scores of a normalised (N, C, H, W) float32 batch."""
        ...

    def presence(self, batch: np.ndarray) -> np.ndarray:
        """The panel probability (N,) of each tile of a normalised batch judged whole, as the classifier judges a
        chip; asked only of predictors whose metadata holds a presence threshold (``PRESENCE_THRESHOLD``)."""
        ...


class ModelPredictor:
    """A PanelNet bundle: one encoder pass, the classifier, then the decoder only on tiles over the gate threshold.

    The model runs as an inference copy with its BatchNorms folded and its weights in the runtime's reduced
    precision; ``plan`` compiles the encoder when the job is big enough to pay for it (``compile``: 'auto', 'on'
    or 'off'). With ``tta`` each segmented tile's pixel map is the mean over its eight flips and quarter turns
    (``dihedral_mean``), and the predictor's metadata carries the bundle's pixel threshold for that
    (``pixel_threshold``); tile probabilities are the classifier's on the tile as it is, either way.
    """

    def __init__(
        self,
        bundle: Bundle,
        runtime: Runtime,
        gate: bool = True,
        gate_threshold: float | None = None,
        compile: str = "auto",
        tta: bool = False,
    ) -> None:
        compile_pays(compile, 0, runtime)  # rejects an unknown policy now rather than at the first big job
        self.metadata = bundle.metadata
        self.tta = tta
        if tta:
            if TTA_PIXEL_THRESHOLD not in bundle.metadata.thresholds:
                log.warning("%s: no pixel threshold chosen for test-time augmentation; using the plain one "
                            "(solarscan calibrate --tta chooses it)", bundle.path or "bundle")
            thresholds = {**bundle.metadata.thresholds, "pixel": pixel_threshold(bundle.metadata, tta=True)}
            self.metadata = replace(bundle.metadata, thresholds=thresholds)
        self.runtime = runtime
        self.model = runtime.prepare(inference_copy(bundle.model, runtime.autocast_dtype))
        self.dtype = next(self.model.parameters()).dtype
        self.compile = compile
        self._encode = self.model.encode
        self._encode_shape: tuple[int, ...] | None = None  # the batch shape ``_encode`` was compiled for; None: eager
        self._weights: str | None = None  # ``encoder_digest`` of the model, once a job has needed it
        self.gate = gate
        self.gate_threshold = default_gate_threshold(self.metadata) if gate_threshold is None else gate_threshold
        stem = bundle.path.stem if bundle.path else self.metadata.architecture
        self.name = f"{stem} ({self.metadata.architecture} {self.metadata.package_version}{', tta' if tta else ''})"

    def __getstate__(self) -> dict:
        """Pickled (e.g. for other processes) without a compiled encoder, which each process makes for itself."""
        return {**self.__dict__, "_encode": None, "_encode_shape": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._encode = self.model.encode

    def plan(self, tiles: dict[int, int], batch_size: int) -> None:
        """Prepare for a job of ``tiles`` (tile size -> count) in batches of ``batch_size`` (``batch_tiles``): for
        the tile size with the most pixels, use the compiled encoder if an earlier job compiled it, or compile it if the
        job pays for it. Tiles of other sizes run eager."""
        if not tiles:
            return
        size = max(tiles, key=lambda s: tiles[s] * s**2)
        count = tiles[size]
        pixels = count * size**2
        if count < 1 or not compile_pays(self.compile, pixels, self.runtime, compiled_before=True):
            return
        # A job of fewer tiles than a batch gets batches of its own size: padding them would waste the compute.
        batch = batch_tiles(batch_size, size, self.metadata.tile_size)
        shape = (min(batch, count), len(self.metadata.bands), size, size)
        if shape == self._encode_shape:
            return
        example = self.runtime.to_input(torch.zeros(shape)).to(self.dtype)
        self._weights = self._weights or encoder_digest(self.model)
        package = package_path(self._weights, example)
        if not compile_pays(self.compile, pixels, self.runtime, package.is_file()):
            return
        try:
            with stage("compile"):
                self._encode = compiled_encoder(self.model, example, package)
                self._encode_shape = shape
        except Exception as exc:  # noqa: BLE001 (any compiler failure must leave scoring to the eager model)
            log.warning("compiling the encoder failed, scoring with the eager model: %s", exc)

    def predict(self, batch: np.ndarray) -> TileScores:
        with stage("model"):
            return self._predict(batch)

    def _predict(self, batch: np.ndarray) -> TileScores:
        n, _, h, w = batch.shape
        with torch.inference_mode(), self.runtime.autocast():
            x = self.runtime.to_input(torch.from_numpy(batch)).to(self.dtype)
            encode, capacity = self.encoder_for(x)
            features = encode(x)
            presence = torch.sigmoid(presence_logits(self.model, features, presence_window(h, self.metadata.tile_size)))
            tile = presence.amax(dim=(1, 2))
            chosen = tile >= self.gate_threshold if self.gate else torch.ones_like(tile, dtype=torch.bool)
            maps = torch.zeros((n, h, w), dtype=torch.float32, device=tile.device)
            if bool(chosen.any()):
                maps[chosen] = self._pixel_probability(x[chosen], [f[chosen] for f in features], encode, capacity)
                if self.gate:  # cells no window around them passes are no panel either
                    cells = (presence[chosen] >= self.gate_threshold).repeat_interleave(SIZE_STEP, 1)
                    maps[chosen] *= cells.repeat_interleave(SIZE_STEP, 2)[:, :h, :w]
        return TileScores(tile.cpu().numpy(), maps.cpu().numpy(), chosen.cpu().numpy())

    def presence(self, batch: np.ndarray) -> np.ndarray:
        with stage("model"), torch.inference_mode(), self.runtime.autocast():
            x = self.runtime.to_input(torch.from_numpy(batch)).to(self.dtype)
            return torch.sigmoid(self.model.classify(self.model.encode(x)).float()).cpu().numpy()

    def encoder_for(self, x: torch.Tensor) -> tuple[Callable[[torch.Tensor], list[torch.Tensor]], int]:
        """The encoder for a batch ``x`` prepared for the model, and the most tiles it takes at once: the compiled
        one where ``plan`` compiled it for this tile size and a batch at least this big (it pads shorter batches),
        else the eager model's."""
        shape = self._encode_shape
        if shape is not None and x.shape[0] <= shape[0] and x.shape[-1] == shape[-1]:  # tiles are square
            return self._encode, shape[0]
        return self.model.encode, x.shape[0]

    def _pixel_probability(self, x: torch.Tensor, features: list[torch.Tensor],
                           encode: Callable[[torch.Tensor], list[torch.Tensor]], batch: int) -> torch.Tensor:
        """Pixel panel probabilities (N, H, W) of tiles ``x`` whose encoder ``features`` are at hand; with
        ``tta``, the other views go through ``encode`` in batches of up to ``batch`` tiles."""
        size = tuple(x.shape[-2:])

        def probability(tiles: torch.Tensor, known: list[torch.Tensor] | None = None) -> torch.Tensor:
            # A turned view is laid out again as the (compiled) encoder expects its input.
            logits = self.model.segment(known or encode(self.runtime.to_input(tiles)), size)
            return torch.sigmoid(logits.float())[:, 0]

        first = probability(x, features)
        return dihedral_mean(x, probability, first, batch) if self.tta else first


def default_gate_threshold(metadata: BundleMetadata) -> float:
    """The tile probability from which the decoder runs: the bundle's gate threshold, chosen on scenes, or else
    ``GATE_FRACTION`` of its tile threshold."""
    thresholds = metadata.thresholds
    return thresholds.get(GATE_THRESHOLD, thresholds["tile"] * GATE_FRACTION)


def pixel_threshold(metadata: BundleMetadata, tta: bool) -> float:
    """The bundle's pixel threshold for scoring with or without test-time augmentation (``--tta``); a bundle
    calibrated without it uses its plain threshold for both."""
    thresholds = metadata.thresholds
    return thresholds.get(TTA_PIXEL_THRESHOLD, thresholds["pixel"]) if tta else thresholds["pixel"]


def presence_logits(model: models.PanelNet, features: list[torch.Tensor], window: int) -> torch.Tensor:
    """Classifier logits (N, rows, cols) per stride-32 cell of a batch of square tiles: for tiles larger than
    ``window`` pixels, the highest logit of the windows of that size that hold the cell, laid one cell apart and
    each judged as a tile of its own (``PanelNet.window_logits``); else the classifier on the whole tile.

    Judged densely, a lone array is judged in a window about its own size wherever it lies, never diluted by the
    ground of a larger window around it.
    """
    cells = features[-1].shape[-2:]
    span = window // SIZE_STEP
    if span >= min(cells):
        return model.classify(features)[:, None, None].float().expand(-1, *cells)
    windows = model.window_logits(features, span)[:, None]
    return F.max_pool2d(F.pad(windows, (span - 1,) * 4, value=-torch.inf), span, stride=1)[:, 0]


def tile_logits(model: models.PanelNet, features: list[torch.Tensor], window: int) -> torch.Tensor:
    """Tile logits (N,): the highest of the tile's ``presence_logits``."""
    return presence_logits(model, features, window).amax(dim=(1, 2))


def plan_job(predictor: Predictor, tiles: dict[int, int], batch_size: int) -> None:
    """Let a model predictor prepare for a job of ``tiles`` (tile size -> count; see ``ModelPredictor.plan``);
    any other predictor needs nothing."""
    if isinstance(predictor, ModelPredictor):
        predictor.plan(tiles, batch_size)


def default_bundle_path() -> Path:
    """Where the shipped model bundle is installed, inside the ``models`` package."""
    return Path(models.__file__).resolve().parent / "weights" / DEFAULT_BUNDLE_NAME


def load_predictor(
    bundle_path: Path | None,
    device: str = "auto",
    precision: str = "auto",
    gate: bool = True,
    gate_threshold: float | None = None,
    compile: str = "auto",
    tta: bool = False,
) -> ModelPredictor:
    """Load a bundle (the shipped one when ``bundle_path`` is None) onto a device as a predictor."""
    path = bundle_path or default_bundle_path()
    if bundle_path is None and not path.is_file():
        raise ModelNotFoundError(f"{path}: the default model bundle is not installed; pass --model BUNDLE")
    try:
        bundle = load_bundle(path)
        runtime = Runtime.resolve(device, precision)
    except BundleNotFoundError as exc:
        raise ModelNotFoundError(str(exc)) from None
    except (ModelError, ValueError) as exc:
        raise ScoringConfigError(str(exc)) from None
    return predictor_for(bundle, runtime, gate=gate, gate_threshold=gate_threshold, compile=compile, tta=tta)


def predictor_for(bundle: Bundle, runtime: Runtime, gate: bool = True, gate_threshold: float | None = None,
                  compile: str = "auto", tta: bool = False) -> ModelPredictor:
    """A loaded bundle as a predictor; it must hold a PanelNet detector."""
    if not isinstance(bundle.model, models.PanelNet):
        where = bundle.path or "bundle"
        raise ScoringConfigError(
            f"{where}: bundle holds a {bundle.metadata.architecture!r} model, not a PanelNet detector; "
            "pass a detector bundle"
        )
    return ModelPredictor(bundle, runtime, gate=gate, gate_threshold=gate_threshold, compile=compile, tta=tta)
