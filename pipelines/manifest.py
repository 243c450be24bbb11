"""Resumable batches: a manifest beside the output records each finished scene and where its results are kept."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.export import atomic_path

FORMAT_VERSION = 1
_HASHED_BYTES = 1 << 20  # checksum reads the first and last MiB


def file_checksum(path: Path) -> str:
    """``size:mtime_ns:sha256`` of the first and last MiB: cheap, and catches rewrites and truncation."""
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(_HASHED_BYTES))
        if stat.st_size > 2 * _HASHED_BYTES:
            f.seek(-_HASHED_BYTES, os.SEEK_END)
        digest.update(f.read(_HASHED_BYTES))
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest.hexdigest()}"


@dataclass(frozen=True)
class SceneRecord:
    """What a finished scene produced."""

    checksum: str
    part: str  # file name of its panel set in the parts folder
    panels: int
    area_m2: float
    tile_probability: float
    has_panels: bool
    georeferenced: bool
    mask: str | None  # probability raster written for it, if any


class Manifest:
    """Finished scenes of one output, keyed by absolute input path; saved atomically after every scene.

    Records are valid only for the same ``fingerprint`` (model and result-affecting options): change either and
    every scene is scored again.
    """

    def __init__(self, path: Path, fingerprint: str, scenes: dict[str, SceneRecord] | None = None) -> None:
        self.path, self.fingerprint = path, fingerprint
        self.scenes: dict[str, SceneRecord] = scenes or {}

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Manifest:
        """The manifest at ``path`` when it matches ``fingerprint``; an empty one otherwise."""
        try:
            data = json.loads(path.read_text())
            if data["format_version"] == FORMAT_VERSION and data["fingerprint"] == fingerprint:
                return cls(path, fingerprint, {k: SceneRecord(**v) for k, v in data["scenes"].items()})
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return cls(path, fingerprint)

    def finished(self, source: Path, checksum: str, parts_dir: Path) -> SceneRecord | None:
        """The record of ``source`` if it was scored from the same file and its results are still on disk."""
        record = self.scenes.get(str(source))
        if record is None or record.checksum != checksum or not (parts_dir / record.part).is_file():
            return None
        if record.mask is not None and not Path(record.mask).is_file():
            return None
        return record

    def record(self, source: Path, record: SceneRecord) -> None:
        self.scenes[str(source)] = record
        data = {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "scenes": {k: dataclasses.asdict(v) for k, v in self.scenes.items()},
        }
        with atomic_path(self.path) as partial:
            partial.write_text(json.dumps(data, indent=1))
