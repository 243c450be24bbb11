"""The on-disk catalog of labelled imagery: a STAC catalog with one item per labelled image.

Layout of a catalog directory::

    DIR/catalog.json              STAC Catalog linking every item
    DIR/<id>/<id>.json            STAC Item (image asset, label asset, label/projection/file extensions)
    DIR/<id>/<id>.geojson         polygons picked for that image (``polygons`` items only)

Images and masks stay where they are: hrefs to files inside DIR are relative, files elsewhere are referenced
by absolute path (catalogues of large scenes never copy them). Every file is written to a temporary name and
moved into place with ``os.replace``; ``catalog.json`` is written last, so an interrupted add leaves the
previous catalog intact. Concurrent writers are serialised with a lock file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pystac

from .candidates import mask_candidates, polygon_candidates, presence_candidates
from .checksums import file_checksum
from .errors import (
    CatalogError,
    CatalogExistsError,
    CatalogFormatError,
    CatalogNotFoundError,
    InputError,
    ItemRejected,
)
from .items import LABEL_KINDS, Candidate, LabelledItem
from .splits import SPLITS, assign_split
from .stac_items import from_stac, to_stac
from .validation import ValidatedItem, validate_candidate

CATALOG_FILE = "catalog.json"
LOCK_FILE = ".lock"
CATALOG_ID = "solarscan-labelled-imagery"


@dataclass(frozen=True)
class AddReport:
    """Outcome of an add: ids of new and already-present items, and ``(image name, reason)`` per rejection."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


class Catalog:
    """A catalog directory; build one with :meth:`create` or :meth:`open`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self._root: pystac.Catalog
        self._items: dict[str, LabelledItem] = {}
        self._loaded_stamp: tuple[int, int] | None = None

    @classmethod
    def create(cls, directory: Path) -> Catalog:
        """Start an empty catalog in ``directory`` (created if needed); fail if one is already there."""
        catalog = cls(directory)
        if catalog._catalog_file.exists():
            raise CatalogExistsError(f"a catalog already exists in {catalog.directory}")
        try:
            catalog.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create a catalog in {catalog.directory}: {exc}") from None
        catalog._root = pystac.Catalog(
            id=CATALOG_ID,
            description="Overhead imagery labelled for solar panels (masks, polygons or tile-level presence).",
            href=str(catalog._catalog_file),
            catalog_type=pystac.CatalogType.SELF_CONTAINED,
        )
        _write_json(catalog._catalog_file, catalog._root.to_dict(include_self_link=False))
        return catalog

    @classmethod
    def open(cls, directory: Path) -> Catalog:
        """Open the catalog in ``directory``."""
        catalog = cls(directory)
        catalog._load()
        return catalog

    @property
    def _catalog_file(self) -> Path:
        return self.directory / CATALOG_FILE

    def _load(self) -> None:
        if not self._catalog_file.is_file():
            raise CatalogNotFoundError(
                f"no catalog in {self.directory}: run `solarscan catalog init {self.directory}` first"
            )
        stat = self._catalog_file.stat()
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if stamp == self._loaded_stamp:
            return
        try:
            self._root = pystac.Catalog.from_file(str(self._catalog_file))
            stac_items = [
                _read_item(link.get_absolute_href()) for link in self._root.get_links(pystac.RelType.ITEM)
            ]
        except (pystac.STACError, OSError, ValueError, KeyError) as exc:
            raise CatalogFormatError(f"cannot read the catalog in {self.directory}: {exc}") from None
        self._items = {item.id: item for item in map(from_stac, stac_items)}
        self._loaded_stamp = stamp

    def __len__(self) -> int:
        return len(self._items)

    def items(self, split: str | None = None) -> list[LabelledItem]:
        """Items sorted by id, optionally only those of one split."""
        if split is not None and split not in SPLITS:
            raise InputError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        return [self._items[key] for key in sorted(self._items) if split in (None, self._items[key].split)]

    @property
    def version(self) -> str:
        """Content hash over ids, label kinds and values, file checksums, gsd, groups and splits."""
        digest = hashlib.sha256()
        for item in self.items():
            fields = [item.id, item.label_kind, item.image_checksum, item.label_checksum, item.has_panels]
            fields += [item.gsd_m, item.group, item.split]
            digest.update(json.dumps(fields).encode() + b"\n")
        return digest.hexdigest()[:16]

    def summary(self) -> dict[str, object]:
        """Item counts in total and per label kind, split, source and panel presence."""
        items = self.items()
        return {
            "items": len(items),
            "by_kind": dict(Counter(item.label_kind for item in items)),
            "by_split": dict(Counter(item.split for item in items)),
            "by_source": dict(Counter(item.source for item in items)),
            "by_has_panels": dict(Counter(str(item.has_panels).lower() for item in items)),
        }

    def validate(self) -> list[tuple[str, str]]:
        """Problems as ``(item id, reason)``: missing or changed files, inconsistent labels or splits."""
        problems: list[tuple[str, str]] = []
        first_with_image: dict[str, str] = {}
        for item in self.items():
            problems += [(item.id, reason) for reason in _item_problems(item)]
            earlier = first_with_image.setdefault(item.image_checksum, item.id)
            if earlier != item.id:
                problems.append((item.id, f"same image as item {earlier}"))
        return problems

    def add(
        self,
        images: Sequence[Path],
        masks: Sequence[Path] | None = None,
        polygons: Path | None = None,
        labels_csv: Path | None = None,
        gsd: float | None = None,
        source: str = "user",
        licence: str = "unknown",
    ) -> AddReport:
        """Add images with exactly one kind of label: masks, a polygons GeoJSON or a presence CSV.

        Masks pair with images by stem (``<stem>.*`` / ``<stem>_mask.*``), else by position. Polygons: each
        image keeps the features intersecting its footprint (none: a valid negative), but a collection that
        overlaps none of the images is rejected as misplaced. The CSV has columns ``file,has_panels``.
        """
        if sum(label is not None for label in (masks, polygons, labels_csv)) != 1:
            raise InputError("give exactly one kind of label: masks, polygons or a labels CSV")
        if not images:
            raise InputError("no images given")
        images = [Path(image) for image in images]
        common = {"gsd_m": gsd, "source": source, "licence": licence}
        if masks is not None:
            candidates, problems = mask_candidates(images, [Path(mask) for mask in masks], **common)
        elif polygons is not None:
            candidates, problems = polygon_candidates(images, Path(polygons), **common)
        else:
            candidates, problems = presence_candidates(images, Path(labels_csv), **common)
        return self.add_candidates(candidates, problems)

    def add_candidates(
        self, candidates: Iterable[Candidate], problems: Sequence[tuple[str, str]] = ()
    ) -> AddReport:
        """Validate and add prepared candidates; ``problems`` found while preparing them join the report."""
        report = AddReport(errors=list(problems))
        with self._lock():
            self._load()
            validated = []
            for candidate in candidates:
                try:
                    checked = validate_candidate(candidate)
                    validated.append((file_checksum(candidate.image_path), checked))
                except ItemRejected as exc:
                    report.errors.append((candidate.display_name, str(exc)))
                except OSError as exc:
                    report.errors.append((candidate.display_name, f"image is not readable: {exc}"))
            validated = _reject_misplaced_polygons(validated, report)
            by_checksum = {item.image_checksum: item for item in self._items.values()}
            created = datetime.now(UTC)
            for checksum, checked in validated:
                existing = by_checksum.get(checksum)
                if existing is None:
                    item = self._write_item(checksum, checked, created)
                    by_checksum[checksum] = item
                    report.added.append(item.id)
                elif _same_label(existing, checked):
                    report.unchanged.append(existing.id)
                else:
                    report.errors.append(
                        (
                            checked.candidate.display_name,
                            f"already catalogued as {existing.id} with a different label",
                        )
                    )
            if report.added:
                _write_json(self._catalog_file, self._root.to_dict(include_self_link=False))
                stat = self._catalog_file.stat()
                self._loaded_stamp = (stat.st_ino, stat.st_mtime_ns)
        return report

    def _write_item(self, checksum: str, checked: ValidatedItem, created: datetime) -> LabelledItem:
        candidate = checked.candidate
        item_id = self._new_id(candidate, checksum)
        item_dir = self.directory / item_id
        item_dir.mkdir(exist_ok=True)
        label_path = candidate.mask_path
        if checked.label_geojson is not None:
            label_path = item_dir / f"{item_id}.geojson"
            _write_bytes(label_path, checked.label_geojson)
        item = LabelledItem(
            id=item_id,
            image_path=candidate.image_path.resolve(),
            label_kind=candidate.label_kind,
            label_path=label_path.resolve() if label_path else None,
            has_panels=checked.has_panels,
            gsd_m=checked.gsd_m,
            crs=checked.image.crs_string,
            source=candidate.source,
            licence=candidate.licence,
            split=assign_split(checked.group),
            group=checked.group,
            shape=checked.image.shape,
            bands=checked.image.bands,
            image_checksum=checksum,
            label_checksum=checked.label_checksum,
            properties=dict(candidate.properties),
        )
        item_file = item_dir / f"{item_id}.json"
        stac_item = to_stac(item, checked.image, item_file, self.directory, created)
        self._root.add_item(stac_item)
        _write_json(item_file, stac_item.to_dict(include_self_link=False))
        self._items[item_id] = item
        return item

    def _new_id(self, candidate: Candidate, checksum: str) -> str:
        """``<source>-<name>``, with a checksum suffix when another image already holds that id."""
        item_id = _slug(f"{candidate.source}-{candidate.name or candidate.image_path.stem}")
        if item_id in self._items:
            item_id = f"{item_id}-{checksum[4:12]}"
        return item_id

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.directory / LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _reject_misplaced_polygons(
    validated: list[tuple[str, ValidatedItem]], report: AddReport
) -> list[tuple[str, ValidatedItem]]:
    """Reject polygon items when a non-empty collection overlaps none of the images (wrong CRS or place)."""
    with_polygons = [c for _, c in validated if c.candidate.label_kind == "polygons"]
    offered = sum(len(c.candidate.polygons) for c in with_polygons[:1])
    if not offered or any(c.has_panels for c in with_polygons):
        return validated
    reason = (
        f"none of the {offered} polygons overlaps this image or any other image added with it "
        "(check the polygons' CRS and place)"
    )
    report.errors.extend((checked.candidate.display_name, reason) for checked in with_polygons)
    return [(checksum, c) for checksum, c in validated if c.candidate.label_kind != "polygons"]


def _same_label(item: LabelledItem, checked: ValidatedItem) -> bool:
    return (item.label_kind, item.label_checksum, item.has_panels, item.gsd_m) == (
        checked.candidate.label_kind,
        checked.label_checksum,
        checked.has_panels,
        checked.gsd_m,
    )


def _item_problems(item: LabelledItem) -> Iterator[str]:
    if item.label_kind not in LABEL_KINDS:
        yield f"unknown label kind {item.label_kind!r}"
    if (item.label_path is None) != (item.label_kind == "presence"):
        yield f"{item.label_kind} item {'lacks' if item.label_path is None else 'has'} a label file"
    if not isinstance(item.has_panels, bool):
        yield f"has_panels must be true or false, got {item.has_panels!r}"
    if item.split != assign_split(item.group):
        yield f"split {item.split!r} does not match its group {item.group!r} ({assign_split(item.group)!r})"
    files = [("image", item.image_path, item.image_checksum), ("label", item.label_path, item.label_checksum)]
    for role, path, checksum in files:
        if path is None:
            continue
        if not path.is_file():
            yield f"{role} file missing: {path}"
        elif file_checksum(path) != checksum:
            yield f"{role} file changed since it was catalogued: {path}"


def _read_item(href: str) -> pystac.Item:
    with open(href) as f:
        return pystac.Item.from_dict(json.load(f), href=href, migrate=False, preserve_dict=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")


def _write_json(path: Path, document: dict) -> None:
    _write_bytes(path, (json.dumps(document, indent=1) + "\n").encode())


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, then ``os.replace``."""
    descriptor, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as tmp:
            os.fchmod(tmp.fileno(), 0o644)
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
