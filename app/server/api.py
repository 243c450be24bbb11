"""Routes: the versioned job API under ``/v1``, ``/healthz``, and the web map at ``/``."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.server.auth import require_key
from app.server.config import ServerConfig
from app.server.errors import ApiError, job_not_found
from app.server.jobs import Job, JobBusyError, JobRunner, JobStore, job_score_options, named
from app.server.schemas import ErrorBody, JobInfo, JobList, JobOptions, job_info
from app.server.storage import DataDir, JobFiles, check_raster, receive_uploads
from pipelines.errors import ScoringConfigError, ScoringError
from pipelines.pictures.quicklook import render
from pipelines.predictors import Predictor
from pipelines.scoring.export import atomic_path

STATIC = Path(__file__).resolve().parent / "static"
_ERRORS = {code: {"model": ErrorBody} for code in (401, 404)}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "GeoTIFF (or JPEG 2000) images, one part each.",
                        }
                    },
                }
            }
        },
    }
}
_RESULTS = {
    "panels.geojson": ("geojson", "application/geo+json"),
    "panels.gpkg": ("gpkg", "application/geopackage+sqlite3"),
    "tiles.csv": ("tiles_csv", "text/csv"),
}


def create_app(config: ServerConfig, predictor_factory: Callable[[], Predictor] | None = None) -> FastAPI:
    """The service; jobs are scored by predictors from ``predictor_factory`` (default: ``config.model``)."""
    data = DataDir(config.data_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        data.create()
        store = JobStore(data.database)
        known = {job.id for job in store.all()}
        for job_id in set(data.job_ids_on_disk()) - known:  # uploads cut off by a stop
            data.job(job_id).remove()
        runner = JobRunner(
            store,
            data,
            predictor_factory or dataclasses.replace(config.score_options, model=config.model).load_predictor,
            config.workers,
            config.score_options,
        )
        app.state.store, app.state.runner = store, runner
        runner.start()
        try:
            yield
        finally:
            runner.stop()
            store.close()

    app = FastAPI(
        title="solarscan",
        version="1",
        summary="Find solar panels in uploaded GeoTIFFs; browse them on a map.",
        lifespan=lifespan,
    )
    app.state.config, app.state.data = config, data
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(_jobs_router(), prefix="/v1")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness check; needs no API key."""
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _jobs_router() -> APIRouter:
    router = APIRouter(tags=["jobs"], dependencies=[Depends(require_key)], responses=_ERRORS)

    @router.post(
        "/jobs",
        status_code=202,
        response_model=JobInfo,
        openapi_extra=_UPLOAD_BODY,
        responses={code: {"model": ErrorBody} for code in (413, 415, 422)},
    )
    async def create_job(
        request: Request, response: Response, options: Annotated[JobOptions, Query()]
    ) -> JobInfo:
        """Upload images (multipart field ``files``, repeated) and queue a job that scores them, with the scoring
        options given as query parameters (``?threshold=0.5&regularise=true``) over the server's own."""
        config: ServerConfig = request.app.state.config
        chosen = options.model_dump(exclude_none=True)
        try:
            job_score_options(config.score_options, chosen)
        except ScoringConfigError as exc:
            raise ApiError(422, "invalid options", str(exc)) from None
        files = request.app.state.data.new_job()
        try:
            uploads = await receive_uploads(request, files, config.max_upload_bytes, config.max_files)
            stored = [
                await run_in_threadpool(check_raster, path, name, config.max_pixels) for path, name in uploads
            ]
        except BaseException:
            files.remove()
            raise
        job = request.app.state.store.add(files.id, stored, chosen)
        request.app.state.runner.notify()
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        return job_info(job)

    @router.get("/jobs", response_model=JobList)
    def list_jobs(request: Request) -> JobList:
        """Every job, oldest first."""
        return JobList(jobs=[job_info(job) for job in request.app.state.store.all()])

    @router.get("/jobs/{job_id}", response_model=JobInfo)
    def get_job(request: Request, job_id: str) -> JobInfo:
        """State, progress, per-file errors and summary of a job."""
        return job_info(_job(request, job_id))

    @router.delete("/jobs/{job_id}", status_code=204, responses={409: {"model": ErrorBody}})
    def delete_job(request: Request, job_id: str) -> Response:
        """Remove a job and its files (not while it is running)."""
        files = request.app.state.data.job(job_id)
        try:
            if not request.app.state.store.remove(job_id):
                raise job_not_found(job_id)
        except JobBusyError:
            raise ApiError(409, "job is running", "a running job cannot be removed; wait until it is done")
        files.remove()
        return Response(status_code=204)

    for name, (attribute, media_type) in _RESULTS.items():
        router.add_api_route(
            f"/jobs/{{job_id}}/{name}",
            _result_route(attribute, media_type, name),
            methods=["GET"],
            response_class=FileResponse,
            responses={200: {"content": {media_type: {}}}, 409: {"model": ErrorBody}},
            summary=f"Download {name}",
            name=f"download_{attribute}",
        )

    @router.get(
        "/jobs/{job_id}/files/{index}/quicklook.png",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}, 422: {"model": ErrorBody}},
    )
    def quicklook(request: Request, job_id: str, index: int) -> FileResponse:
        """A PNG picture of an uploaded image on the Web Mercator grid, for a map overlay at its ``bounds``."""
        job = _job(request, job_id)
        if not 0 <= index < len(job.files) or job.files[index].bounds is None:
            raise ApiError(
                404, "no quicklook", f"job {job_id} has no image {index} that can be shown on a map"
            )
        files: JobFiles = request.app.state.data.job(job_id)
        stored = job.files[index].stored
        path = files.quicklook(stored)
        if not path.is_file():
            try:
                picture = render(files.input(stored))
            except ScoringError as exc:
                raise ApiError(
                    422, "no quicklook", named(str(exc), {files.input(stored): job.files[index].name})
                )
            with atomic_path(path) as partial:
                partial.write_bytes(picture.png)
        return FileResponse(path, media_type="image/png")

    return router


def _result_route(attribute: str, media_type: str, name: str) -> Callable[[Request, str], FileResponse]:
    def download(request: Request, job_id: str) -> FileResponse:
        job = _job(request, job_id)
        path: Path = getattr(request.app.state.data.job(job_id), attribute)
        if job.state in ("queued", "running"):
            raise ApiError(
                409, "not ready", f"job {job_id} is {job.state}; results are ready when it is done"
            )
        if not path.is_file():
            raise ApiError(404, "no results", f"job {job_id} failed before writing results: {job.error}")
        return FileResponse(path, media_type=media_type, filename=f"{job_id}-{name}")

    download.__doc__ = f"The job's {name} (409 until the job is done)."
    return download


def _job(request: Request, job_id: str) -> Job:
    request.app.state.data.job(job_id)  # 404 for anything that is not a job id
    job = request.app.state.store.get(job_id)
    if job is None:
        raise job_not_found(job_id)
    return job


def _error(
    status_code: int, error: str, detail: object, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = jsonable_encoder({"error": error, "detail": detail})
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return _error(exc.status_code, exc.error, exc.detail, headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    phrase = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "request error")
    return _error(exc.status_code, phrase, exc.detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"where": list(e.get("loc", ())), "problem": e.get("msg", "")} for e in exc.errors()]
    return _error(422, "invalid request", problems)
