"""The data directory: where jobs, their uploads and results live, and how uploads get there safely.

Layout::

    <data>/jobs.sqlite3            job state
    <data>/api-key                 generated API key (mode 0600)
    <data>/jobs/<id>/inputs/<n>.<ext>   uploads under generated names
    <data>/jobs/<id>/out/          results and the scoring manifest
    <data>/jobs/<id>/quicklooks/   rendered map overlays

Every path handed out is resolved and checked to lie inside the data directory; job ids and stored file names
are validated before they touch the file system. Client file names are kept for display only.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import rasterio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from starlette.requests import ClientDisconnect, Request

from app.server.errors import ApiError, job_not_found
from pipelines.errors import MissingGeoreferenceError
from pipelines.pictures.quicklook import overlay_grid

JOB_ID = re.compile(r"[0-9a-f]{32}")
STORED_NAME = re.compile(r"[0-9]{1,6}\.(tif|jp2)")
UPLOAD_FIELD = "files"
# Leading bytes of the raster formats the scoring pipeline reads -> stored extension and the GDAL driver.
_FORMATS = {
    b"II*\x00": ("tif", "GTiff"),
    b"MM\x00*": ("tif", "GTiff"),
    b"II+\x00": ("tif", "GTiff"),  # BigTIFF
    b"MM\x00+": ("tif", "GTiff"),
    b"\x00\x00\x00\x0cjP  \r\n\x87\n": ("jp2", "JP2OpenJPEG"),
}


@dataclass(frozen=True)
class StoredFile:
    """An uploaded raster: the client's name (display only), its name in the job's inputs, size and map bounds."""

    name: str
    stored: str
    size: int
    bounds: tuple[float, float, float, float] | None  # west, south, east, north (degrees)


class DataDir:
    """The server's data directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.jobs = self.root / "jobs"
        self.database = self.root / "jobs.sqlite3"
        self.api_key = self.root / "api-key"

    def create(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.jobs.mkdir(exist_ok=True)

    def inside(self, path: Path) -> Path:
        """``path`` resolved, or PermissionError when it leads out of the data directory."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise PermissionError(f"{path} is outside the data directory {self.root}")
        return resolved

    def new_job(self) -> JobFiles:
        return self.job(uuid.uuid4().hex)

    def job(self, job_id: str) -> JobFiles:
        """The files of job ``job_id``; 404 for anything that is not a job id."""
        if not JOB_ID.fullmatch(job_id):
            raise job_not_found(job_id)
        return JobFiles(self, job_id)

    def job_ids_on_disk(self) -> list[str]:
        return [p.name for p in self.jobs.iterdir() if p.is_dir() and JOB_ID.fullmatch(p.name)]


class JobFiles:
    """Paths of one job, all inside the data directory."""

    def __init__(self, data: DataDir, job_id: str) -> None:
        self.id = job_id
        self.root = data.inside(data.jobs / job_id)
        self._data = data
        self.inputs = self.root / "inputs"
        self.out = self.root / "out"
        self.scored_panels = (
            self.out / "panels.parquet"
        )  # the scoring pipeline's output (and manifest beside it)
        self.scored_tiles = self.out / "scored-tiles.csv"
        self.geojson = self.out / "panels.geojson"
        self.gpkg = self.out / "panels.gpkg"
        self.tiles_csv = self.out / "tiles.csv"
        self.quicklooks = self.root / "quicklooks"

    def input(self, stored: str) -> Path:
        if not STORED_NAME.fullmatch(stored):
            raise PermissionError(f"{stored!r} is not a stored input name")
        return self._data.inside(self.inputs / stored)

    def quicklook(self, stored: str) -> Path:
        return self._data.inside(self.quicklooks / (PurePosixPath(self.input(stored).name).stem + ".png"))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def receive_uploads(
    request: Request, job: JobFiles, max_bytes: int, max_files: int
) -> list[tuple[Path, str]]:
    """Stream the multipart field ``files`` (repeated) into ``job.inputs`` as ``<n>.upload``.

    Returns the written paths in upload order with the client file names made safe to display. Raises
    ApiError: 413 past ``max_bytes`` of request body, 415 for a body that is not multipart/form-data,
    422 for a body cut off before its closing boundary, other fields, parts that are not files, too many files
    or none.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(
            415,
            "unsupported media type",
            f"send the rasters as multipart/form-data in field {UPLOAD_FIELD!r}",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    job.inputs.mkdir(parents=True, exist_ok=True)
    receiver = _PartWriter(job.inputs, max_files)
    parser = MultipartParser(boundary, receiver.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END:  # finalize() does not check it
            raise ApiError(
                422,
                "malformed upload",
                "the multipart body ended before its closing boundary; send it again",
            )
    except MultipartParseError as exc:
        raise ApiError(422, "malformed upload", f"the multipart body cannot be parsed ({exc})") from None
    except ClientDisconnect:
        raise ApiError(
            400, "upload interrupted", "the client disconnected before the upload was complete"
        ) from None
    finally:
        receiver.close()
    if not receiver.paths:
        raise ApiError(422, "no files", f"upload one or more GeoTIFFs in form field {UPLOAD_FIELD!r}")
    return list(zip(receiver.paths, receiver.names))


def check_raster(path: Path, name: str, max_pixels: int) -> StoredFile:
    """Give an upload its stored name from its leading bytes, after checking its header: a georeferenced
    raster of at most ``max_pixels`` (width x height).

    Raises ApiError 415 for a file that is no GeoTIFF or JPEG 2000, 413 for one of more pixels, 422 for one
    whose header cannot be read or that has no CRS. Pixels are not read here: damaged pixel data fails when
    the job scores the file, and is reported as that file's error.
    """
    with path.open("rb") as f:
        head = f.read(12)
    kind = next((v for magic, v in _FORMATS.items() if head.startswith(magic)), None)
    if kind is None:
        raise ApiError(
            415, "unsupported file type", f"{name}: not a GeoTIFF or JPEG 2000 raster; upload GeoTIFFs (.tif)"
        )
    ext, driver = kind
    stored = path.with_name(f"{path.stem}.{ext}")
    path.rename(stored)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(stored) as src:
                if src.driver != driver or src.count < 1:
                    raise RasterioError(f"read by {src.driver} with {src.count} bands")
                if src.width * src.height > max_pixels:
                    raise ApiError(
                        413,
                        "image too large",
                        f"{name}: {src.width} x {src.height} px ({src.width * src.height:,} px) is more than "
                        f"this server's limit of {max_pixels:,} px; split the image or raise --max-pixels",
                    )
                bounds = overlay_grid(src).bounds
    except MissingGeoreferenceError:
        raise ApiError(
            422, "not georeferenced", f"{name}: the raster has no usable CRS; upload georeferenced GeoTIFFs"
        ) from None
    except RasterioError as exc:
        raise ApiError(422, "unreadable raster", f"{name}: cannot be read as a raster ({exc})") from None
    return StoredFile(name=name, stored=stored.name, size=stored.stat().st_size, bounds=bounds)


def display_name(filename: str, index: int) -> str:
    """A client file name made safe to show: its last path component, printable, at most 200 characters."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    printable = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()[:200]
    return printable if printable not in ("", ".", "..") else f"file-{index + 1}"


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, "upload too large", f"uploads are limited to {max_bytes:,} bytes per request; send fewer files"
    )


class _PartWriter:
    """Callbacks of the multipart parser that write each file part to its own file."""

    def __init__(self, directory: Path, max_files: int) -> None:
        self.directory, self.max_files = directory, max_files
        self.paths: list[Path] = []
        self.names: list[str] = []
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._file = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._append("_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._append("_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._file.write(data[start:end]),
            "on_part_end": self._part_end,
        }

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _append(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def _part_begin(self) -> None:
        self._headers, self._field, self._value = {}, b"", b""

    def _header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        field = options.get(b"name", b"").decode("utf-8", "replace")
        if disposition != b"form-data" or field != UPLOAD_FIELD:
            raise ApiError(
                422,
                "unexpected form field",
                f"only the file field {UPLOAD_FIELD!r} is accepted, got {field!r}",
            )
        if b"filename" not in options:
            raise ApiError(422, "not a file", f"each {UPLOAD_FIELD!r} part must be a file upload")
        if len(self.paths) >= self.max_files:
            raise ApiError(422, "too many files", f"a job takes at most {self.max_files} files")
        index = len(self.paths)
        self.names.append(display_name(options[b"filename"].decode("utf-8", "replace"), index))
        self.paths.append(self.directory / f"{index}.upload")
        self._file = self.paths[-1].open("xb")

    def _part_end(self) -> None:
        self.close()
        self._file = None
