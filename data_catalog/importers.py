"""Importers for the labelled datasets under ``shared/data``, one function per folder layout.

Each importer reads the dataset's own index files, turns every row into a :class:`Candidate` (validated
like any other addition) and adds them to a catalog. A folder that does not have the expected layout raises
:class:`InputFileError` naming the missing file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from .candidates import presence, read_csv
from .catalog import CATALOG_FILE, AddReport, Catalog
from .errors import InputError, InputFileError
from .items import Candidate

Problems = list[tuple[str, str]]

DUKE = "duke_fresno_pv_tiles"
NREL = "nrel_google_pv_segmentation"
BERN = "bern_swisstopo_pv_positives"
BANGKOK = "bangkok_vatsai_pv_geotiff"

DUKE_LICENCE = (
    "USGS orthoimagery (Fresno 2013): US public domain. Presence labels from a Duke course / Kaggle competition, "
    "no licence stated: research and evaluation use; cite Bradbury et al. 2016 and Malof et al. 2016."
)
NREL_LICENCE = (
    "Imagery (c) Google and its providers (Google Maps Static API): internal evaluation only, do not "
    "redistribute or publish derived imagery. Annotations: MIT, (c) 2020 Alliance for Sustainable Energy (NREL)."
)
BERN_LICENCE = "(c) swisstopo, SFOE register; attribution required"
BANGKOK_LICENCE = (
    "No licence stated; satellite imagery of an unnamed provider (JackTSully/unet_solar_panel_detection): "
    "research and evaluation use only."
)
NREL_GSD_M = 0.47  # Static Maps zoom 18 at US latitudes: 0.42-0.52 m/px (see the dataset's SOURCES.md)
DUKE_GSD_M = 0.3


def import_duke(dataset_dir: Path, catalog: Catalog) -> AddReport:
    """Duke/USGS Fresno 101x101 PNG tiles with tile-level presence labels (``labels.csv``)."""
    rows = _read_csv(dataset_dir, "labels.csv", {"file", "source_id", "has_pv"})
    candidates, problems = [], []
    for row in rows:
        image = dataset_dir / row["file"]
        has_panels = _presence(row["has_pv"], image.name, "has_pv", problems)
        if has_panels is not None:
            candidates.append(
                Candidate(
                    image,
                    "presence",
                    has_panels=has_panels,
                    gsd_m=DUKE_GSD_M,
                    source=DUKE,
                    licence=DUKE_LICENCE,
                    properties={"source_id": _number_or_text(row["source_id"])},
                )
            )
    return catalog.add_candidates(candidates, problems)


def import_nrel(dataset_dir: Path, catalog: Catalog) -> AddReport:
    """NREL Panel-Segmentation tiles: masks, PV-free tiles and mounting-type boxes.

    PV-free tiles become ``presence`` items with ``has_panels=False`` rather than items with a fabricated
    all-zero mask: the dataset only states that the tile holds no PV, and the catalog records labels as the
    source gives them (see :class:`LabelledItem` for how a trainer may use such negatives). Mount-detection
    images become ``presence`` positives carrying their boxes in ``properties["mount_boxes"]``. The PNG tiles of
    both are colour-mapped (``bands == ("palette",)``); the segmentation JPEGs are RGB.
    """
    common = {"gsd_m": NREL_GSD_M, "source": NREL, "licence": NREL_LICENCE}
    segmentation = _read_csv(dataset_dir, "segmentation/index.csv", {"image", "mask"})
    negatives = _read_csv(dataset_dir, "negatives/index.csv", {"image", "has_pv"})
    boxes = _read_csv(
        dataset_dir, "mount_detection/boxes.csv", {"image", "class", "xmin", "ymin", "xmax", "ymax"}
    )
    candidates: list[Candidate] = [
        Candidate(
            dataset_dir / row["image"],
            "mask",
            mask_path=dataset_dir / row["mask"],
            properties={"subset": "segmentation"},
            **common,
        )
        for row in segmentation
    ]
    problems: Problems = []
    for row in negatives:
        image = dataset_dir / row["image"]
        has_panels = _presence(row["has_pv"], image.name, "has_pv", problems)
        if has_panels is not None:
            candidates.append(
                Candidate(
                    image, "presence", has_panels=has_panels, properties={"subset": "negatives"}, **common
                )
            )
    boxes_by_image: dict[str, list[dict[str, object]]] = defaultdict(list)
    for number, row in enumerate(boxes, start=2):
        try:
            corners = {key: int(row[key]) for key in ("xmin", "ymin", "xmax", "ymax")}
        except ValueError:
            raise InputError(
                f"{dataset_dir / 'mount_detection/boxes.csv'} line {number}: box corners must be integers"
            )
        boxes_by_image[row["image"]].append({"class": row["class"], **corners})
    for image, image_boxes in boxes_by_image.items():
        candidates.append(
            Candidate(
                dataset_dir / image,
                "presence",
                has_panels=True,
                properties={"subset": "mount_detection", "mount_boxes": image_boxes},
                **common,
            )
        )
    return catalog.add_candidates(candidates, problems)


def import_bern(dataset_dir: Path, catalog: Catalog) -> AddReport:
    """swisstopo Bern GeoTIFF chips (EPSG:2056, 0.2 m): weak positives from the SFOE PV plant register.

    The register says a PV plant exists at the building, not that it is visible: filter on
    ``properties["registry_first_operation"]`` (e.g. before 2020) for reliable positives.
    """
    kept = (
        "center_e_lv95",
        "center_n_lv95",
        "registry_plants",
        "registry_total_power_kw",
        "registry_first_operation",
    )
    rows = _read_csv(dataset_dir, "labels.csv", {"file", "has_pv_registry", *kept})
    candidates, problems = [], []
    for row in rows:
        image = dataset_dir / row["file"]
        has_panels = _presence(row["has_pv_registry"], image.name, "has_pv_registry", problems)
        if has_panels is not None:
            properties = {"weak_label": True, **{key: _number_or_text(row[key]) for key in kept}}
            candidates.append(
                Candidate(
                    image,
                    "presence",
                    has_panels=has_panels,
                    source=BERN,
                    licence=BERN_LICENCE,
                    properties=properties,
                )
            )
    return catalog.add_candidates(candidates, problems)


def import_bangkok(dataset_dir: Path, catalog: Catalog) -> AddReport:
    """Bangkok GeoTIFF tiles (EPSG:32647) with mask GeoTIFFs (255 = PV); the polygon files are noted only."""
    rows = _read_csv(dataset_dir, "index.csv", {"image", "mask", "polygons_wgs84"})
    candidates = [
        Candidate(
            dataset_dir / row["image"],
            "mask",
            mask_path=dataset_dir / row["mask"],
            source=BANGKOK,
            licence=BANGKOK_LICENCE,
            properties={"polygons_wgs84": row["polygons_wgs84"]},
        )
        for row in rows
    ]
    return catalog.add_candidates(candidates)


IMPORTERS: dict[str, tuple[str, Callable[[Path, Catalog], AddReport]]] = {
    "duke": (DUKE, import_duke),
    "nrel": (NREL, import_nrel),
    "bern": (BERN, import_bern),
    "bangkok": (BANGKOK, import_bangkok),
}


def import_shared(
    data_root: Path, catalog_dir: Path, only: Sequence[str] | None = None
) -> dict[str, AddReport]:
    """Import every dataset of ``data_root`` that exists (or exactly those named in ``only``) into the catalog
    in ``catalog_dir``, creating it when needed. Returns the report per dataset key."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise InputFileError(f"data folder not found: {data_root}")
    unknown = set(only or ()) - IMPORTERS.keys()
    if unknown:
        raise InputError(
            f"unknown dataset(s) {', '.join(sorted(unknown))}: choose from {', '.join(IMPORTERS)}"
        )
    exists = (Path(catalog_dir) / CATALOG_FILE).is_file()
    catalog = Catalog.open(catalog_dir) if exists else Catalog.create(catalog_dir)
    reports = {}
    for key in only or IMPORTERS:
        folder, importer = IMPORTERS[key]
        dataset_dir = data_root / folder
        if not dataset_dir.is_dir():
            if only:
                raise InputFileError(f"dataset folder not found: {dataset_dir}")
            continue
        reports[key] = importer(dataset_dir, catalog)
    return reports


def _read_csv(dataset_dir: Path, name: str, columns: set[str]) -> list[dict[str, str]]:
    path = dataset_dir / name
    if not path.is_file():
        raise InputFileError(f"{dataset_dir} does not have the expected layout: missing {path}")
    return read_csv(path, columns)


def _number_or_text(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _presence(value: str, name: str, column: str, problems: Problems) -> bool | None:
    """0/1 cell as a bool; anything else is recorded as a problem of ``name``."""
    has_panels = presence(value)
    if has_panels is None:
        problems.append((name, f"{column} must be 0 or 1, got {value!r}"))
    return has_panels
