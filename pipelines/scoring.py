"""Batch scoring: GeoTIFFs (or plain tiles) in, georeferenced panel polygons, per-image CSV and masks out.

``score`` runs a whole batch (resumable, failures reported per input) on an executor (this process or a Ray
cluster); ``score_scene`` does one scene and can run anywhere the scene file and a predictor are available.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
from tqdm import tqdm

from pipelines.acceleration import COMPILE_POLICIES
from pipelines.errors import ScoringConfigError, ScoringError
from pipelines.executors import EXECUTORS, open_executor
from pipelines.export import atomic_path, check_output_path, combine, write_panels, write_tiles_csv
from pipelines.folders import check_writable_folder
from pipelines.manifest import Manifest, SceneRecord, scene_checksum
from pipelines.options import checked_values
from pipelines.predictors import Predictor, load_predictor
from pipelines.scenes import Scene, find_inputs, open_scene, scene_key
from pipelines.tiling import DEFAULT_OVERLAP
from pipelines.units import SceneResult, gather_scenes, join_units, plan_units, score_unit

STRIP_PIXELS = 1 << 22  # source pixels per vectorising strip (bounds memory for any scene width)
UNIT_TILES = 2048  # tiles per unit of work when an executor splits large scenes into strips
# Options that change results: a resumed batch reuses earlier scenes only if these are unchanged.
_RESULT_OPTIONS = (
    "gsd_m",
    "bit_depth",
    "precision",  # as asked for: "auto" may resolve differently on another machine, and is not told apart
    "threshold",
    "gate",
    "gate_threshold",
    "tta",
    "overlap",
    "min_area_m2",
    "min_confidence",
    "simplify_px",
    "regularise",
    "masks_dir",
)


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


@dataclass(frozen=True)
class ScoreSummary:
    """Outcome of a batch."""

    output: Path
    inputs: int
    scored: int  # scored in this run
    resumed: int  # finished earlier, reused
    failures: dict[str, str]  # input path -> reason (which begins with that path)
    panels: int  # all panels found, including those of inputs without a CRS
    area_m2: float
    unreferenced: dict[str, int] = field(
        default_factory=dict
    )  # inputs without a CRS -> panels (not in output)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The command's exit status: 1 when any input failed, else 0."""
        return 1 if self.failures else 0

    def report(self) -> str:
        """Human-readable summary."""
        lines = [
            f"inputs: {self.inputs} (scored {self.scored}, resumed {self.resumed}, failed {len(self.failures)})",
            f"panels: {self.panels}, total area {self.area_m2:,.1f} m2",
            f"output: {self.output}",
            f"time: {self.seconds:.1f} s",
        ]
        if self.unreferenced:
            lines.append(
                f"note: {sum(self.unreferenced.values())} panel(s) from {len(self.unreferenced)} input(s) without a "
                "CRS are counted above but not in the output (pixel coordinates cannot be placed on the map); "
                f"their polygons are in {self.output.name}.parts/, their probabilities in the tiles CSV and masks"
            )
        lines += [f"failed: {reason}" for reason in self.failures.values()]  # each reason names its file
        return "\n".join(lines)


def score_scene(
    scene: Scene,
    predictor: Predictor,
    options: ScoreOptions,
    workdir: Path,
    progress: Callable[[int], None] | None = None,
) -> SceneResult:
    """Score one scene: tiles -> predictor -> blended probability -> polygons with attributes.

    ``workdir`` holds the temporary model-grid probability raster; ``progress`` is told how many tiles are done.
    """
    [unit] = plan_units(scene, predictor.metadata, options, STRIP_PIXELS, max_tiles=None)
    return join_units([score_unit(unit, predictor, options, workdir, progress)], predictor, options)


def score(
    inputs: Iterable[str | Path],
    out: str | Path,
    options: ScoreOptions = ScoreOptions(),
    predictor: Predictor | None = None,
) -> ScoreSummary:
    """Score every raster in ``inputs`` (files and folders) into the panel layer ``out`` (.geojson/.gpkg/.parquet).

    Inputs that fail are reported in the summary and the others still scored; rerunning with the same ``out``
    skips scenes already finished (``options.resume``). ``predictor`` defaults to the model of ``options.model``.
    """
    start = time.perf_counter()
    out = Path(out).resolve()
    check_output_path(out)
    for given, option, example in [(out, "--out", "panels.geojson"), (options.tiles_csv, "--tiles-csv", "tiles.csv")]:
        if given is not None and Path(given).is_dir():
            raise ScoringConfigError(
                f"{given}: is a folder; {option} takes a file name, such as {Path(given) / example}"
            )
    check_writable_folder(out.parent, "the output (--out)", ScoringConfigError)
    if options.tiles_csv is not None:
        check_writable_folder(Path(options.tiles_csv).resolve().parent, "the tiles CSV (--tiles-csv)",
                              ScoringConfigError)
    if options.masks_dir is not None:
        check_writable_folder(Path(options.masks_dir).resolve(), "masks (--masks-dir)", ScoringConfigError)
    parts_dir = out.with_name(out.name + ".parts")
    paths = find_inputs(inputs, exclude=[parts_dir, *([options.masks_dir] if options.masks_dir else [])])
    if not paths:
        raise ScoringConfigError(
            f"no input rasters found in {[str(i) for i in inputs]}; pass files or folders holding .tif/.png/... images"
        )
    if options.masks_dir is not None:
        _check_mask_names(paths, Path(options.masks_dir))
    given = predictor is not None
    if predictor is None:
        predictor = options.load_predictor()
    fingerprint = _fingerprint(predictor, options)
    manifest_path = out.with_name(out.name + ".manifest.jsonl")
    manifest = (
        Manifest.load(manifest_path, fingerprint) if options.resume else Manifest(manifest_path, fingerprint)
    )

    records: dict[Path, SceneRecord] = {}
    failures: dict[str, str] = {}
    checksums: dict[Path, str] = {}
    todo: list[Scene] = []
    resumed = 0
    for path in paths:
        try:
            scene = open_scene(path, predictor.metadata.bands, options.gsd_m, options.bit_depth)
            checksum = scene_checksum(path, scene.companions)
        except (ScoringError, OSError) as exc:
            failures[str(path)] = str(exc)
            continue
        record = manifest.finished(path, checksum, parts_dir) if options.resume else None
        if record is not None:
            records[path], resumed = record, resumed + 1
        else:
            checksums[path] = checksum
            todo.append(scene)

    show = sys.stderr.isatty() if options.progress is None else options.progress
    parts_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=parts_dir, prefix=".work-") as workdir,
        open_executor(options, predictor, given, Path(workdir)) as executor,
    ):
        # Masks are written whole by one worker, so scenes are split only when none are asked for.
        max_tiles = UNIT_TILES if executor.splits_scenes and options.masks_dir is None else None
        units = [
            unit
            for scene in todo
            for unit in plan_units(scene, predictor.metadata, options, STRIP_PIXELS, max_tiles)
        ]
        with tqdm(
            total=sum(u.owned_tiles for u in units), desc="scoring", unit="tile", disable=not show
        ) as bar:
            for scene, results in gather_scenes(executor.map(units, bar.update)):
                if isinstance(results, str):
                    failures[str(scene.path)] = results
                    continue
                try:
                    result = join_units(results, predictor, options)
                except ScoringError as exc:
                    failures[str(scene.path)] = str(exc)
                    continue
                records[scene.path] = _keep(result, checksums[scene.path], parts_dir, manifest)

    done = [p for p in paths if p in records]
    write_panels(
        combine(gpd.read_parquet(parts_dir / records[p].part) for p in done if records[p].georeferenced), out
    )
    if options.tiles_csv is not None:
        write_tiles_csv(
            ((str(p), records[p].tile_probability, records[p].has_panels) for p in done), options.tiles_csv
        )
    return ScoreSummary(
        output=out,
        inputs=len(paths),
        scored=len(done) - resumed,
        resumed=resumed,
        failures=failures,
        panels=sum(records[p].panels for p in done),
        area_m2=sum(records[p].area_m2 for p in done),
        unreferenced={str(p): records[p].panels for p in done if not records[p].georeferenced},
        seconds=time.perf_counter() - start,
    )


def _check_mask_names(paths: list[Path], masks_dir: Path) -> None:
    """Refuse a batch in which two inputs would write the same mask (masks are named by their input's stem)."""
    first: dict[str, Path] = {}
    for path in paths:
        other = first.setdefault(path.stem, path)
        if other != path:
            raise ScoringConfigError(
                f"{other} and {path} would both write their mask to {masks_dir / path.stem}.*; rename one, or score "
                "them with separate --masks-dir"
            )


def _keep(result: SceneResult, checksum: str, parts_dir: Path, manifest: Manifest) -> SceneRecord:
    """Persist a scene's panels in the parts folder and record it as finished."""
    path = result.scene.path
    part = f"{path.stem}-{scene_key(path)}.parquet"
    with atomic_path(parts_dir / part) as partial:
        result.panels.to_parquet(partial, index=False)
    record = SceneRecord(
        checksum=checksum,
        part=part,
        panels=len(result.panels),
        area_m2=float(result.panels["area_m2"].sum()),
        tile_probability=result.tile_probability,
        has_panels=bool(result.has_panels),
        georeferenced=result.scene.georeferenced,
        mask=str(result.mask_path) if result.mask_path else None,
    )
    manifest.record(path, record)
    return record


def _fingerprint(predictor: Predictor, options: ScoreOptions) -> str:
    described = {
        "model": predictor.name,
        "metadata": predictor.metadata.to_json(),
        "options": {name: str(getattr(options, name)) for name in _RESULT_OPTIONS},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
