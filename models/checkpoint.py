"""Checkpoint bundle: one safetensors file holding the weights and, in its header, the JSON metadata.

The metadata travels inside the same file, so a bundle can never be separated from its normalisation,
bands or thresholds. Loading never unpickles anything.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from models.errors import BundleError, BundleNotFoundError, ModelError
from models.registry import create_model

FORMAT_VERSION = 1
METADATA_KEY = "solarscan"


def json_null_nan(value: Any) -> Any:
    """``value`` with every NaN (an undefined metric) in its dicts and lists as None, JSON's null: JSON has no
    NaN, and a bundle's header or a report must parse in any JSON reader."""
    if isinstance(value, dict):
        return {k: json_null_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_null_nan(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def package_version() -> str:
    try:
        return version("solarscan")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class BundleMetadata:
    """Everything needed to use a set of weights correctly."""

    architecture: str
    model_kwargs: dict[str, Any]
    bands: list[str]
    norm_mean: list[float]
    norm_std: list[float]
    gsd_m: float
    tile_size: int
    thresholds: dict[str, float] = field(default_factory=lambda: {"tile": 0.5, "pixel": 0.5})
    class_names: list[str] = field(default_factory=lambda: ["background", "solar_panel"])
    data_version: str = "unknown"
    metrics: dict[str, Any] = field(default_factory=dict)
    package_version: str = field(default_factory=package_version)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        n = len(self.bands)
        if len(self.norm_mean) != n or len(self.norm_std) != n:
            raise BundleError(
                f"normalisation has {len(self.norm_mean)} means and {len(self.norm_std)} stds for {n} bands"
            )
        if any(s <= 0 for s in self.norm_std):
            raise BundleError(f"normalisation stds must be positive, got {self.norm_std}")
        if self.gsd_m <= 0 or self.tile_size <= 0:
            raise BundleError(f"gsd_m and tile_size must be positive, got {self.gsd_m} and {self.tile_size}")

    def to_json(self) -> str:
        return json.dumps(json_null_nan(dataclasses.asdict(self)), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: Path) -> BundleMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{source}: metadata is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("format_version"), int):
            raise BundleError(f"{source}: metadata has no format_version; it is not a solarscan bundle, or a damaged one")
        if data["format_version"] > FORMAT_VERSION:  # before the keys: a newer format may have other ones
            raise BundleError(
                f"{source}: bundle format {data['format_version']} is newer than this solarscan supports "
                f"({FORMAT_VERSION}); upgrade solarscan"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in data and
                         f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        problems = [*([f"has unknown keys {unknown}"] if unknown else []),
                    *([f"lacks required keys {missing}"] if missing else [])]
        if problems:
            raise BundleError(f"{source}: metadata {' and '.join(problems)}")
        return cls(**data)


@dataclass
class Bundle:
    """A model with its metadata, ready for inference or further training."""

    model: nn.Module
    metadata: BundleMetadata
    path: Path | None = None


def build_model(metadata: BundleMetadata) -> nn.Module:
    """Instantiate (untrained) the architecture a metadata record describes."""
    try:
        return create_model(metadata.architecture, **metadata.model_kwargs)
    except (ModelError, TypeError) as exc:
        raise BundleError(f"cannot build {metadata.architecture!r} with {metadata.model_kwargs}: {exc}") from None


def save_bundle(path: str | os.PathLike, model: nn.Module, metadata: BundleMetadata,
                dtype: torch.dtype = torch.float32) -> Path:
    """Write weights (floating parameters cast to ``dtype``) and metadata atomically to ``path``.

    Buffers keep their own dtype: BatchNorm running variances can exceed fp16's range (65504), and one cast to
    inf silences its channels.
    """
    parameters = {name for name, _ in model.named_parameters()}
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() and k in parameters else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    return _write(Path(path), tensors, metadata)


def rewrite_metadata(path: str | os.PathLike, metadata: BundleMetadata, out: str | os.PathLike | None = None) -> Path:
    """Write the bundle at ``path`` with new ``metadata`` and its weights unchanged (same dtypes) to ``out``
    (default: in place, atomically)."""
    path = Path(path)
    read_metadata(path)  # the same checks and messages as loading
    tensors = _read_tensors(path)
    return _write(Path(out) if out is not None else path, tensors, metadata)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{path}: weights are unreadable (truncated or corrupt?): {exc}") from None


def _write(path: Path, tensors: dict[str, torch.Tensor], metadata: BundleMetadata) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: metadata.to_json()})
        os.chmod(tmp, 0o644)  # after writing (safetensors recreates the file): a bundle is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path: str | os.PathLike) -> BundleMetadata:
    """Read only the metadata of a bundle (cheap: the header, not the weights)."""
    path = Path(path)
    if not path.is_file():
        raise BundleNotFoundError(f"{path}: model bundle not found; pass --model with an existing .safetensors bundle")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable safetensors bundle (truncated or corrupt?): {exc}") from None
    if METADATA_KEY not in header:
        raise BundleError(f"{path}: safetensors file has no solarscan metadata; it is not a solarscan bundle")
    return BundleMetadata.from_json(header[METADATA_KEY], path)


def load_bundle(path: str | os.PathLike, expected_architecture: str | None = None) -> Bundle:
    """Load and check a bundle: the architecture, every tensor name and every shape must fit."""
    path = Path(path)
    metadata = read_metadata(path)
    if expected_architecture is not None and metadata.architecture != expected_architecture:
        raise BundleError(
            f"{path}: bundle holds a {metadata.architecture!r} model, expected {expected_architecture!r}"
        )
    model = build_model(metadata)
    tensors = _read_tensors(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[:3]})")
        raise BundleError(f"{path}: weights do not fit {metadata.architecture!r}: " + "; ".join(parts))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    model.eval()
    return Bundle(model=model, metadata=metadata, path=path)
