"""Turning the arguments of :meth:`Catalog.add` (image list plus masks, polygons or a CSV) into candidates.

Problems tied to one image are returned as ``(image name, reason)``; problems with a whole input file raise.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
from pyogrio.errors import DataSourceError

from .errors import InputError, InputFileError
from .items import Candidate

Problems = list[tuple[str, str]]


def mask_candidates(
    images: Sequence[Path], masks: Sequence[Path], **common: Any
) -> tuple[list[Candidate], Problems]:
    """Pair images with masks by stem (``<stem>.*`` or ``<stem>_mask.*``), else by position when none match."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for mask in masks:
        by_stem[mask.stem].append(mask)
        if mask.stem.endswith("_mask"):
            by_stem[mask.stem.removesuffix("_mask")].append(mask)
    matches = {
        image: [m for m in by_stem.get(image.stem, []) if m.resolve() != image.resolve()] for image in images
    }
    if not any(matches.values()):
        if len(masks) != len(images):
            raise InputError(
                f"{len(images)} images but {len(masks)} masks, and no mask is named after an image "
                "(<stem>.png or <stem>_mask.*)"
            )
        return [Candidate(image, "mask", mask_path=mask, **common) for image, mask in zip(images, masks)], []
    candidates, problems = [], []
    for image, found in matches.items():
        if len(found) == 1:
            candidates.append(Candidate(image, "mask", mask_path=found[0], **common))
        elif not found:
            problems.append(
                (image.name, f"no mask given for it (expected {image.stem}.png or {image.stem}_mask.*)")
            )
        else:
            problems.append((image.name, "several masks match it: " + ", ".join(str(m) for m in found)))
    return candidates, problems


def read_polygons(path: Path) -> gpd.GeoDataFrame:
    """Polygon features of a GeoJSON file (WGS84 unless the file names another CRS)."""
    if not path.is_file():
        raise InputFileError(f"polygons file not found: {path}")
    try:
        polygons = gpd.read_file(path)
    except (DataSourceError, ValueError) as exc:
        raise InputError(f"cannot read polygons from {path}: {exc}") from None
    if polygons.crs is None:
        polygons = polygons.set_crs("EPSG:4326")
    polygons = polygons[polygons.geometry.notna() & ~polygons.geometry.is_empty]
    kinds = set(polygons.geom_type)
    if not kinds <= {"Polygon", "MultiPolygon"}:
        raise InputError(f"{path} must hold only Polygon/MultiPolygon features, found {sorted(kinds)}")
    return polygons


def polygon_candidates(
    images: Sequence[Path], polygons_path: Path, **common: Any
) -> tuple[list[Candidate], Problems]:
    """One candidate per image, each offered the whole collection (validation keeps what overlaps)."""
    polygons = read_polygons(polygons_path)
    return [Candidate(image, "polygons", polygons=polygons, **common) for image in images], []


def presence_candidates(
    images: Sequence[Path], labels_csv: Path, **common: Any
) -> tuple[list[Candidate], Problems]:
    """Match each image to a ``file,has_panels`` row (by path, else by file name) and read its 0/1 label."""
    if not labels_csv.is_file():
        raise InputFileError(f"labels CSV not found: {labels_csv}")
    rows = [(row["file"], row["has_panels"]) for row in read_csv(labels_csv, {"file", "has_panels"})]
    by_path = {(labels_csv.parent / file).resolve(): value for file, value in rows}
    by_name: dict[str, list[str]] = defaultdict(list)
    for file, value in rows:
        by_name[Path(file).name].append(value)
    candidates, problems = [], []
    for image in images:
        value = by_path.get(image.resolve())
        if value is None:
            named = by_name.get(image.name, [])
            if len(named) > 1:
                problems.append(
                    (image.name, f"{len(named)} rows of {labels_csv.name} name it; give its path")
                )
                continue
            value = named[0] if named else None
        if value is None:
            problems.append((image.name, f"not listed in {labels_csv.name}"))
        elif (has_panels := presence(value)) is None:
            problems.append((image.name, f"has_panels must be 0 or 1 in {labels_csv.name}, got {value!r}"))
        else:
            candidates.append(Candidate(image, "presence", has_panels=has_panels, **common))
    return candidates, problems


def read_csv(path: Path, columns: set[str]) -> list[dict[str, str]]:
    """The rows of a UTF-8 CSV file (with or without the byte-order mark Excel writes); short rows get empty
    cells. Raises InputError for text in other encodings and for missing ``columns``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, restval="")
            missing = columns - set(reader.fieldnames or [])
            if missing:
                expected = ",".join(sorted(columns))
                raise InputError(f"{path} lacks column(s) {', '.join(sorted(missing))} (expected {expected})")
            return list(reader)
    except UnicodeDecodeError as exc:
        problem = f"byte 0x{exc.object[exc.start]:02x}: {exc.reason}"
        raise InputError(f"{path}: not UTF-8 text ({problem}); save the CSV as UTF-8") from None


def presence(value: str) -> bool | None:
    """A 0/1 presence cell as a bool; None for anything else."""
    return {"0": False, "1": True}.get(value.strip())
