"""Resumable batches: a manifest beside the output records each finished scene and where its results are kept."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.scoring.export import atomic_path

FORMAT_VERSION = 2  # 1: one JSON document, rewritten after every scene
_HASHED_BYTES = 1 << 20  # checksum reads the first and last MiB
log = logging.getLogger(__name__)


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


def scene_checksum(path: Path, companions: Sequence[Path]) -> str:
    """``file_checksum`` of a raster, joined with the size and mtime of the files GDAL reads with it (sidecars such
    as world files and .aux.xml, a VRT's sources): an edited source tile or world file is noticed too. Those are
    not read (a VRT may have thousands of sources)."""
    checksum = file_checksum(path)
    if not companions:
        return checksum
    digest = hashlib.sha256()
    for companion in companions:
        stat = companion.stat()
        digest.update(f"{companion}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return f"{checksum}+{len(companions)}:{digest.hexdigest()}"


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
    """Finished scenes of one output, keyed by absolute input path, in JSON Lines: a header naming the format and
    fingerprint, then one line per finished scene, appended as it finishes (a later line for the same input wins).

    Appending keeps a batch of many small chips from rewriting every earlier record after each one (4,000 records:
    134 s rewritten, 0.1 s appended); a line cut short by a crash is ignored on loading, so only that scene is
    scored again. Records are valid only for the same ``fingerprint`` (model and result-affecting options):
    change either and every scene is scored again.
    """

    def __init__(self, path: Path, fingerprint: str, scenes: dict[str, SceneRecord] | None = None) -> None:
        self.path, self.fingerprint = path, fingerprint
        self.scenes: dict[str, SceneRecord] = scenes or {}
        self._file_is_ours = scenes is not None  # the file holds this manifest: records may be appended

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Manifest:
        """The manifest at ``path`` when it matches ``fingerprint``; an empty one otherwise (with a warning when
        there was one made for other settings)."""
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return cls(path, fingerprint)
        header = _parsed(lines[0]) if lines else None
        if header is None or header.get("format_version") != FORMAT_VERSION:
            log.warning("%s: not a manifest of this version of solarscan; every scene is scored again", path)
            return cls(path, fingerprint)
        if header.get("fingerprint") != fingerprint:
            log.warning(
                "%s: made with another model or other result options; every scene is scored again", path
            )
            return cls(path, fingerprint)
        scenes = {}
        for line in lines[1:]:
            entry = _parsed(line)
            try:
                source = entry.pop("source")
                scenes[source] = SceneRecord(**entry)
            except (AttributeError, KeyError, TypeError):  # a line cut short: that scene is scored again
                continue
        return cls(path, fingerprint, scenes)

    def finished(self, source: Path, checksum: str, parts_dir: Path) -> SceneRecord | None:
        """The record of ``source`` if it was scored from the same file and its results are still on disk."""
        record = self.scenes.get(str(source))
        if record is None or record.checksum != checksum or not (parts_dir / record.part).is_file():
            return None
        if record.mask is not None and not Path(record.mask).is_file():
            return None
        return record

    def record(self, source: Path, record: SceneRecord) -> None:
        """Record a finished scene: one line appended, or the whole manifest written when the file is not yet this
        manifest's (a new batch, or one for other settings)."""
        self.scenes[str(source)] = record
        if self._file_is_ours:
            with self.path.open("a") as f:
                f.write(_line(str(source), record))
            return
        header = json.dumps({"format_version": FORMAT_VERSION, "fingerprint": self.fingerprint}) + "\n"
        with atomic_path(self.path) as partial:
            partial.write_text(header + "".join(_line(k, v) for k, v in self.scenes.items()))
        self._file_is_ours = True


def _line(source: str, record: SceneRecord) -> str:
    return json.dumps({"source": source, **dataclasses.asdict(record)}) + "\n"


def _parsed(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
