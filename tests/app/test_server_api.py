"""The job API end to end on tiny scenes: life cycle, results, auth, upload limits and safety, restarts."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import uuid

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from fixtures.scenes import CentreJudgePredictor, DarkBluePredictor, write_scene
from PIL import Image
from pyproj import Transformer
from server_fixtures import make_client, upload, wait_for

from models import BundleMetadata, create_model, save_bundle
from pipelines.scoring.options import ScoreOptions

JSON_ERROR_KEYS = {"error", "detail"}


def test_job_life_cycle(client, data_dir, roof, tmp_path):
    other = write_scene(tmp_path / "field.tif", width=40, height=40, panels=[], seed=1)
    created = upload(client, ("roof.tif", roof.path.read_bytes()), ("field.tif", other.path.read_bytes()))
    assert created.status_code == 202
    job = created.json()
    assert job["state"] == "queued" and created.headers["location"] == f"/v1/jobs/{job['id']}"
    assert [f["name"] for f in job["files"]] == ["roof.tif", "field.tif"]

    job = wait_for(client, job["id"])
    assert job["state"] == "done" and job["errors"] == [] and job["error"] is None
    assert job["summary"] | {"seconds": 0} == {
        "inputs": 2,
        "scored": 2,
        "resumed": 0,
        "failed": 0,
        "panels": 1,
        "area_m2": 50.0,
        "seconds": 0,
    }
    assert (
        job["progress"]["fraction"] == 1.0
        and job["progress"]["tiles_done"] == job["progress"]["tiles_total"] > 0
    )
    assert [j["id"] for j in client.get("/v1/jobs").json()["jobs"]] == [job["id"]]

    geojson = client.get(job["links"]["panels.geojson"])
    assert geojson.status_code == 200 and geojson.headers["content-type"] == "application/geo+json"
    panels = gpd.read_file(io.BytesIO(geojson.content))
    assert list(panels["source"]) == ["roof.tif"]  # uploaded names, never server paths
    centroid = panels.to_crs(roof.crs).geometry.iloc[0].centroid
    assert centroid.distance(roof.panels[0].centroid) < roof.gsd
    gpkg = client.get(job["links"]["panels.gpkg"])
    assert gpkg.status_code == 200 and len(gpd.read_file(io.BytesIO(gpkg.content))) == 1
    rows = list(csv.DictReader(io.StringIO(client.get(job["links"]["tiles.csv"]).text)))
    assert [(r["path"], r["has_panels"]) for r in rows] == [("roof.tif", "true"), ("field.tif", "false")]

    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 404
    assert list((data_dir / "jobs").iterdir()) == []


def test_a_job_scores_with_its_own_options(client, roof):
    plain = wait_for(client, upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"])
    assert plain["summary"]["panels"] == 1 and plain["options"] == {}  # the 50 m2 panel
    answer = client.post(
        "/v1/jobs",
        params={"min_area_m2": 60, "regularise": "true", "bit_depth": 8},
        files=[("files", ("roof.tif", roof.path.read_bytes(), "image/tiff"))],
    )
    assert answer.status_code == 202
    assert answer.json()["options"] == {"min_area_m2": 60.0, "regularise": True, "bit_depth": 8}
    strict = wait_for(client, answer.json()["id"])
    assert strict["state"] == "done" and strict["summary"]["panels"] == 0  # under its minimum area
    assert strict["options"] == {"min_area_m2": 60.0, "regularise": True, "bit_depth": 8}


@pytest.mark.parametrize(
    ("params", "error", "named"),
    [
        ({"threshold": 2}, "invalid options", "threshold must be in (0, 1], got 2.0"),
        ({"bit_depth": 17}, "invalid options", "bit_depth must be in 1-16, got 17"),
        ({"min_area_m2": -1}, "invalid options", "min_area_m2 must be >= 0, got -1.0"),
        ({"threshold": "high"}, "invalid request", "threshold"),
        ({"tta": "true"}, "invalid request", "tta"),  # the server decides what costs eight passes
        ({"min_area_m2": "inf"}, "invalid request", "min_area_m2"),
        ({"simplify_px": "-inf"}, "invalid request", "simplify_px"),
        ({"threshold": "nan"}, "invalid request", "threshold"),
    ],
)
def test_bad_job_options_are_422_before_anything_is_stored(client, data_dir, roof, params, error, named):
    answer = client.post(
        "/v1/jobs", params=params, files=[("files", ("roof.tif", roof.path.read_bytes(), "image/tiff"))]
    )
    assert answer.status_code == 422 and answer.json()["error"] == error
    assert named in str(answer.json()["detail"])
    assert client.get("/v1/jobs").json()["jobs"] == []
    assert not (data_dir / "jobs").exists() or list((data_dir / "jobs").iterdir()) == []


def test_a_data_folder_from_before_job_options_keeps_its_jobs(data_dir, roof):
    with make_client(data_dir, workers=0) as client:
        job_id = upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"]
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:  # the table as the first servers made it
        db.execute("ALTER TABLE jobs DROP COLUMN options")
    with make_client(data_dir) as client:
        job = wait_for(client, job_id)
        assert job["state"] == "done" and job["options"] == {} and job["summary"]["panels"] == 1


def test_quicklook_shows_the_image_where_the_map_puts_it(client, roof):
    job = wait_for(client, upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"])
    west, south, east, north = job["files"][0]["bounds"]
    answer = client.get(job["files"][0]["quicklook"])
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(answer.content)))
    assert picture.shape[2] == 4 and picture[..., 3].max() == 255
    # The panel's centre, placed linearly in Web Mercator between the bounds (as Leaflet does), is the darkest blue.
    to_mercator = Transformer.from_crs(roof.crs, "EPSG:3857", always_xy=True)
    lonlat_to_mercator = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = lonlat_to_mercator.transform([west, east], [south, north])
    x, y = to_mercator.transform(roof.panels[0].centroid.x, roof.panels[0].centroid.y)
    row = int((y1 - y) / (y1 - y0) * picture.shape[0])
    col = int((x - x0) / (x1 - x0) * picture.shape[1])
    red, green, blue, _ = picture[row, col].astype(int)
    assert blue > red + 50 and blue > green + 50


def test_per_file_errors_name_the_upload_and_others_are_scored(client, roof, tmp_path):
    with rasterio.open(
        tmp_path / "ints.tif",
        "w",
        driver="GTiff",
        width=20,
        height=20,
        count=3,
        dtype="int32",
        crs=roof.crs,
        transform=roof.transform,
    ) as dst:
        dst.write(np.ones((3, 20, 20), "int32"))
    job_id = upload(
        client, ("roof.tif", roof.path.read_bytes()), ("ints.tif", (tmp_path / "ints.tif").read_bytes())
    ).json()["id"]
    job = wait_for(client, job_id)
    assert job["state"] == "done" and job["summary"]["panels"] == 1 and job["summary"]["failed"] == 1
    [problem] = job["errors"]
    assert problem["file"] == "ints.tif" and "int32" in problem["error"]
    assert "/jobs/" not in problem["error"]  # server paths are not shown


def test_results_wait_for_the_job(data_dir, roof):
    with make_client(data_dir, workers=0) as client:
        job_id = upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"]
        answer = client.get(f"/v1/jobs/{job_id}/panels.geojson")
        assert answer.status_code == 409 and answer.json()["error"] == "not ready"


def test_healthz_and_page_need_no_key_everything_else_does(client, roof):
    job_id = wait_for(client, upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"])["id"]
    assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}
    assert "leaflet.js" in client.get("/", headers={"Authorization": ""}).text
    for method, path in [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/panels.geojson"),
        ("GET", f"/v1/jobs/{job_id}/panels.gpkg"),
        ("GET", f"/v1/jobs/{job_id}/tiles.csv"),
        ("GET", f"/v1/jobs/{job_id}/files/0/quicklook.png"),
        ("DELETE", f"/v1/jobs/{job_id}"),
    ]:
        for headers in (
            {"Authorization": ""},
            {"Authorization": "Bearer wrong-key"},
            {"Authorization": "Basic x"},
        ):
            answer = client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert set(answer.json()) == JSON_ERROR_KEYS and answer.headers["www-authenticate"] == "Bearer"
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200  # still there


@pytest.mark.parametrize("job_id", [uuid.uuid4().hex, "..", "..%2F..%2Fetc", "ABC", "x" * 32, "0" * 33])
def test_unknown_jobs_are_404(client, job_id):
    for method, suffix in [
        ("GET", ""),
        ("DELETE", ""),
        ("GET", "/panels.geojson"),
        ("GET", "/files/0/quicklook.png"),
    ]:
        answer = client.request(method, f"/v1/jobs/{job_id}{suffix}")
        assert answer.status_code == 404 and set(answer.json()) == JSON_ERROR_KEYS


def test_oversize_upload_is_413_and_leaves_nothing(data_dir, tmp_path):
    big = write_scene(tmp_path / "big.tif", width=200, height=200, panels=[])
    with make_client(data_dir, max_upload_bytes=50_000) as client:
        answer = upload(client, ("big.tif", big.path.read_bytes()))
        assert answer.status_code == 413 and answer.json()["error"] == "upload too large"
        # Without a Content-Length the body is counted while it streams.
        body = iter([b"x" * 30_000, b"x" * 30_000])
        answer = client.post(
            "/v1/jobs", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert answer.status_code == 413
        assert client.get("/v1/jobs").json()["jobs"] == []
    assert list((data_dir / "jobs").iterdir()) == []


def test_an_image_over_the_pixel_limit_is_413_and_leaves_nothing(data_dir, roof):
    with make_client(data_dir, max_pixels=3000) as client:
        answer = upload(client, ("roof.tif", roof.path.read_bytes()))
        assert answer.status_code == 413 and answer.json()["error"] == "image too large"
        assert answer.json()["detail"] == (
            "roof.tif: 64 x 48 px (3,072 px) is more than this server's limit of 3,000 px; "
            "split the image or raise --max-pixels"
        )
        assert client.get("/v1/jobs").json()["jobs"] == []
    assert list((data_dir / "jobs").iterdir()) == []


def test_an_upload_cut_off_before_its_closing_boundary_is_422_and_leaves_nothing(client, data_dir, roof):
    tiff = roof.path.read_bytes()
    body = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="roof.tif"\r\n'
        b"Content-Type: image/tiff\r\n\r\n" + tiff[: len(tiff) // 2]
    )
    answer = client.post(
        "/v1/jobs", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert answer.status_code == 422 and answer.json()["error"] == "malformed upload"
    assert "closing boundary" in answer.json()["detail"]
    assert client.get("/v1/jobs").json()["jobs"] == []
    assert list((data_dir / "jobs").iterdir()) == []


def test_a_tiff_cut_off_after_its_header_is_accepted_and_reported_by_the_job(client, roof):
    tiff = roof.path.read_bytes()
    answer = upload(client, ("roof.tif", roof.path.read_bytes()), ("cut.tif", tiff[: len(tiff) // 2]))
    assert answer.status_code == 202  # only the header is read on upload
    job = wait_for(client, answer.json()["id"])
    assert job["state"] == "done" and job["summary"]["scored"] == 1
    assert [e["file"] for e in job["errors"]] == ["cut.tif"]


def _plain_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff_without_crs(tmp_path) -> bytes:
    spec = write_scene(tmp_path / "plain.tif", width=20, height=20, panels=[], crs=None)
    return spec.path.read_bytes()


@pytest.mark.parametrize(
    ("content", "status", "error"),
    [
        (lambda _: b"just some text", 415, "unsupported file type"),
        (lambda _: _plain_png(), 415, "unsupported file type"),
        (lambda _: b"II*\x00" + bytes(200), 422, "unreadable raster"),
        (_tiff_without_crs, 422, "not georeferenced"),
    ],
    ids=["text", "png", "damaged-tiff", "no-crs"],
)
def test_non_rasters_are_refused(client, data_dir, roof, tmp_path, content, status, error):
    # One bad file refuses the whole upload: no job, no file kept.
    answer = upload(client, ("roof.tif", roof.path.read_bytes()), ("bad.tif", content(tmp_path)))
    assert answer.status_code == status
    assert answer.json()["error"] == error and "bad.tif" in answer.json()["detail"]
    assert client.get("/v1/jobs").json()["jobs"] == []
    assert list((data_dir / "jobs").iterdir()) == []


def test_malformed_requests_are_4xx(client, roof):
    no_files = client.post("/v1/jobs", data={"name": "x"}, files={"other": ("a.tif", b"II*\x00")})
    assert no_files.status_code == 422 and no_files.json()["error"] == "unexpected form field"
    assert client.post("/v1/jobs", files={"files": (None, b"text")}).json()["error"] == "not a file"
    assert client.post("/v1/jobs", json={"files": []}).status_code == 415
    empty = client.post(
        "/v1/jobs", content=b"--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert empty.status_code == 422 and empty.json()["error"] == "no files"
    garbage = client.post(
        "/v1/jobs", content=b"\x00garbage", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert garbage.status_code == 422
    assert client.get("/v1/jobs/x/files/notanumber/quicklook.png").status_code in (404, 422)
    assert client.put("/v1/jobs").status_code == 405


def test_too_many_files(data_dir, roof):
    with make_client(data_dir, max_files=2) as client:
        answer = upload(client, *[(f"{i}.tif", roof.path.read_bytes()) for i in range(3)])
        assert answer.status_code == 422 and answer.json()["error"] == "too many files"


@pytest.mark.parametrize(
    "name",
    ["../../../../evil.tif", "..\\..\\evil.tif", "/tmp/evil.tif", "a/../../evil.tif\x00.txt", "..", " "],
)
def test_client_file_names_never_become_paths(client, data_dir, roof, tmp_path, name):
    answer = upload(client, (name, roof.path.read_bytes()))
    assert answer.status_code == 202
    job = wait_for(client, answer.json()["id"])
    assert job["state"] == "done"
    shown = job["files"][0]["name"]
    assert "/" not in shown and "\\" not in shown and "\x00" not in shown and shown not in ("", ".", "..")
    inputs = data_dir / "jobs" / job["id"] / "inputs"
    assert [p.name for p in inputs.iterdir()] == ["0.tif"]
    assert not any(p.name.startswith("evil") for p in tmp_path.parent.rglob("*evil*"))


def test_queued_job_is_scored_after_a_restart(data_dir, roof):
    with make_client(data_dir, workers=0) as client:  # accepts jobs, scores none
        job_id = upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"]
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"
    with make_client(data_dir) as client:
        job = wait_for(client, job_id)
        assert job["state"] == "done" and job["summary"]["panels"] == 1


class ServerDied(BaseException):
    """Stands for the process being killed: nothing in the worker handles it."""


class DyingPredictor(DarkBluePredictor):
    """Scores the first batch, then the server 'dies' in the middle of the job."""

    def __init__(self) -> None:
        super().__init__()
        self.died = threading.Event()

    def predict(self, batch):
        if self.batches == 1:
            self.died.set()
            raise ServerDied
        return super().predict(batch)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_running_job_resumes_after_a_crash_without_rescoring(data_dir, roof, tmp_path):
    # Each scene is one batch: the server dies after finishing the first scene, while scoring the second.
    second = write_scene(tmp_path / "second.tif", width=64, height=48, panels=[(30, 40, 40, 60)], seed=2)
    dying = DyingPredictor()
    with make_client(data_dir, lambda: dying) as client:
        job_id = upload(
            client, ("roof.tif", roof.path.read_bytes()), ("second.tif", second.path.read_bytes())
        ).json()["id"]
        assert dying.died.wait(60)
        client.app.state.runner.stop()
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"

    survivor = DarkBluePredictor()
    with make_client(data_dir, lambda: survivor) as client:
        job = wait_for(client, job_id)
    assert job["state"] == "done"
    assert job["summary"]["resumed"] == 1 and job["summary"]["scored"] == 1 and job["summary"]["panels"] == 2
    assert survivor.batches == 1  # only the second scene was scored again


def test_jobs_drop_the_panels_the_centred_window_check_rejects(data_dir, tmp_path):
    """A server job checks candidates as the CLI does: a ring whose centre is ground is dropped, a solid panel kept
    with its presence."""
    rings = write_scene(tmp_path / "rings.tif", width=80, height=40,
                        panels=[(10, 10, 20, 22), (10, 40, 15, 60), (25, 40, 30, 60), (15, 40, 25, 45), (15, 55, 25, 60)])
    judge = CentreJudgePredictor()
    with make_client(data_dir, lambda: judge) as client:
        job = wait_for(client, upload(client, ("rings.tif", rings.path.read_bytes())).json()["id"])
        assert job["state"] == "done" and job["summary"]["panels"] == 1 and sum(judge.judged) == 2
        panels = gpd.read_file(io.BytesIO(client.get(job["links"]["panels.geojson"]).content))
    assert panels["presence"].tolist() == [1.0] and panels["area_m2"].iloc[0] == pytest.approx(30.0)


def test_running_job_cannot_be_deleted(data_dir, roof):
    release = threading.Event()

    class Blocking(DarkBluePredictor):
        def predict(self, batch):
            release.wait(60)
            return super().predict(batch)

    with make_client(data_dir, Blocking) as client:
        job_id = upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"]
        wait_for(client, job_id, states=("running",))
        answer = client.delete(f"/v1/jobs/{job_id}")
        assert answer.status_code == 409 and set(answer.json()) == JSON_ERROR_KEYS
        release.set()
        assert wait_for(client, job_id)["state"] == "done"
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204


def test_missing_model_fails_jobs_with_a_clear_error(data_dir, roof, tmp_path):
    missing = tmp_path / "missing.safetensors"
    with make_client(data_dir, predictor_factory=None, model=missing) as client:
        job = wait_for(client, upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"])
        assert job["state"] == "failed"
        assert job["error"].startswith("the model cannot be loaded") and "missing.safetensors" in job["error"]
        assert client.get(f"/v1/jobs/{job['id']}/panels.geojson").status_code == 404


def test_scores_with_a_real_model_bundle(data_dir, roof, tmp_path):
    metadata = BundleMetadata(
        architecture="panelnet",
        model_kwargs={"encoder": "res2net_tiny"},
        bands=["red", "green", "blue"],
        norm_mean=[0.4, 0.45, 0.35],
        norm_std=[0.2, 0.2, 0.2],
        gsd_m=0.5,
        tile_size=64,
    )
    bundle = save_bundle(
        tmp_path / "tiny.safetensors", create_model("panelnet", encoder="res2net_tiny"), metadata
    )
    with make_client(data_dir, predictor_factory=None, model=bundle) as client:
        job = wait_for(client, upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"])
        assert job["state"] == "done" and job["errors"] == [] and job["summary"]["scored"] == 1
        layer = client.get(job["links"]["panels.geojson"]).json()  # an untrained model: any number of panels
        assert layer["type"] == "FeatureCollection"
        assert all(f["properties"]["model"].startswith("tiny") for f in layer["features"])


def test_a_server_configured_for_tta_scores_with_it(data_dir, roof, tmp_path):
    metadata = BundleMetadata(architecture="panelnet", model_kwargs={"encoder": "res2net_tiny"},
                              bands=["red", "green", "blue"], norm_mean=[0.4] * 3, norm_std=[0.2] * 3, gsd_m=0.5,
                              tile_size=64)
    model = create_model("panelnet", encoder="res2net_tiny")
    with torch.no_grad():  # sure of a panel everywhere, so the layer has a polygon to name the model on
        for layer in (model.classifier[-1], model.decoder.logit):
            layer.weight.zero_()
            layer.bias.fill_(8.0)
    bundle = save_bundle(tmp_path / "sure.safetensors", model, metadata)
    options = ScoreOptions(progress=False, tta=True)
    with make_client(data_dir, predictor_factory=None, model=bundle, score_options=options) as client:
        job = wait_for(client, upload(client, ("roof.tif", roof.path.read_bytes())).json()["id"])
        assert job["state"] == "done", job
        layer = client.get(job["links"]["panels.geojson"]).json()
        assert [f["properties"]["model"] for f in layer["features"]] == [f"sure (panelnet {metadata.package_version}, tta)"]


def test_openapi_schema_documents_the_versioned_api(client):
    schema = client.get("/openapi.json", headers={"Authorization": ""}).json()
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/panels.geojson",
        "/v1/jobs/{job_id}/panels.gpkg",
        "/v1/jobs/{job_id}/tiles.csv",
        "/healthz",
    } <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())
