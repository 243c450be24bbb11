"""The web map in headless Chromium: upload scenes, wait for the job, see quicklooks and panel polygons."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fixtures.scenes import DarkBluePredictor, write_scene
from server_fixtures import AUTH, KEY

import app.server.api as server_api
from app.server import ServerConfig, create_app
from pipelines.errors import ScoringError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (make setup installs it)"
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} missing: apt-get install chromium"),
]


@pytest.fixture
def live_server(tmp_path):
    """The service on a free localhost port, served by uvicorn in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(ServerConfig(data_dir=tmp_path / "data", api_key=KEY), DarkBluePredictor)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_upload_watch_and_browse_panels_on_the_map(live_server, tmp_path):
    roofs = write_scene(
        tmp_path / "roofs.tif", width=96, height=64, panels=[(8, 8, 20, 40), (36, 50, 56, 70)]
    )
    field = write_scene(
        tmp_path / "field.tif", width=64, height=64, panels=[], origin=(500_048.0, 5_300_000.0), seed=1
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 800}, accept_downloads=True)
        elsewhere: list[str] = []  # the page runs offline: nothing but this server (and its blobs)
        page.on(
            "request", lambda r: r.url.startswith((live_server, "blob:", "data:")) or elsewhere.append(r.url)
        )
        page.goto(live_server)
        page.fill("#key", "not-the-key")
        page.click("#use-key")
        page.wait_for_selector("#message:has-text('not accepted')")
        page.fill("#key", KEY)
        page.click("#use-key")
        page.set_input_files("#files", [roofs.path, field.path])
        page.click("#send")

        page.wait_for_selector("#map[data-panels]", timeout=120_000)
        assert page.get_attribute("#map", "data-panels") == "2"
        assert page.locator("#jobs .state-done").count() == 1
        assert page.locator("img.leaflet-image-layer").count() == 2  # one quicklook per image
        assert page.locator("path.panel").count() == 2
        # Each polygon lies on its panel in the quicklook: same place relative to the image, within 2 screen px.
        image = page.locator("img[alt='roofs.tif']").bounding_box()
        scale = image["width"] / 96
        assert image["height"] == pytest.approx(64 * scale, abs=2)
        outlines = sorted(
            (page.locator("path.panel").nth(i).bounding_box() for i in range(2)), key=lambda box: box["y"]
        )
        for outline, (row0, col0, row1, col1) in zip(outlines, [(8, 8, 20, 40), (36, 50, 56, 70)]):
            assert outline["x"] == pytest.approx(image["x"] + col0 * scale, abs=2)
            assert outline["y"] == pytest.approx(image["y"] + row0 * scale, abs=2)
            assert outline["width"] == pytest.approx((col1 - col0) * scale, abs=3)
            assert outline["height"] == pytest.approx((row1 - row0) * scale, abs=3)

        page.locator("path.panel").first.click()
        popup = page.wait_for_selector(".leaflet-popup-content table")
        assert {"area_m2", "confidence", "roofs.tif"} <= set(popup.inner_text().split())

        with page.expect_download() as download:
            page.click("#download")
        geojson = json.loads(Path(download.value.path()).read_text())
        assert len(geojson["features"]) == 2

        # A job with its own options: the 96 m2 panel is under its smallest area, the 100 m2 one is not.
        page.click("#options summary")
        page.fill("#min-area", "98")
        page.set_input_files("#files", [roofs.path])
        page.click("#send")
        page.wait_for_selector("#map[data-panels='1']", timeout=120_000)
        assert page.locator("#jobs .state-done").count() == 2 and page.locator("path.panel").count() == 1
        page.fill("#threshold", "2")
        page.set_input_files("#files", [roofs.path])
        page.click("#send")
        page.wait_for_selector("#message:has-text('threshold must be in (0, 1]')")
        assert elsewhere == []
        browser.close()


def test_the_map_keeps_drawing_and_polling_when_a_picture_or_layer_fails(live_server, tmp_path, monkeypatch):
    render = server_api.render

    def render_all_but_the_first(path: Path):
        if path.name.startswith("0."):
            raise ScoringError(f"{path}: cannot draw this one")
        return render(path)

    monkeypatch.setattr(server_api, "render", render_all_but_the_first)
    roofs = write_scene(tmp_path / "roofs.tif", width=96, height=64, panels=[(8, 8, 20, 40)])
    api = httpx.Client(base_url=live_server, headers=AUTH, timeout=60)

    def finished_job() -> str:
        """A job of two images, posted past the page, once it is done."""
        files = [
            ("files", (name, roofs.path.read_bytes(), "image/tiff")) for name in ("broken.tif", "roofs.tif")
        ]
        job_id = api.post("/v1/jobs", files=files).json()["id"]
        deadline = time.monotonic() + 60
        while api.get(f"/v1/jobs/{job_id}").json()["state"] != "done":
            assert time.monotonic() < deadline, "the job is not done after 60 s"
            time.sleep(0.05)
        return job_id

    with api, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(live_server)
        page.fill("#key", KEY)
        page.click("#use-key")

        # One quicklook fails: the message names it; the other picture and the panels are drawn all the same.
        failing = finished_job()
        page.click(f"#jobs [data-job-id='{failing}']")  # waits for the next poll to list it
        page.wait_for_selector("#map[data-panels='2']", timeout=20_000)  # the same roof in both images
        assert "broken.tif: no quicklook" in page.inner_text("#message")
        assert (
            page.locator("img.leaflet-image-layer").count() == 1 and page.locator("path.panel").count() == 2
        )
        assert page.locator("img[alt='roofs.tif']").count() == 1

        # The panels layer fails: the page says so and goes on polling the job list.
        missing = finished_job()
        (tmp_path / "data" / "jobs" / missing / "out" / "panels.geojson").unlink()
        page.click(f"#jobs [data-job-id='{missing}']")
        page.wait_for_selector("#message:has-text('no results')", timeout=20_000)
        later = finished_job()
        page.wait_for_selector(f"#jobs [data-job-id='{later}']", timeout=20_000)
        browser.close()
