"""The Ray executor on a 2-CPU local cluster: same output as the local executor, retries, failures, resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fixtures.scenes
import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from fixtures.predictors import fp32_predictor
from fixtures.scenes import MEAN, STD, DarkBluePredictor, write_scene
from rasterio.windows import Window

import models
from pipelines.predictors import ModelPredictor, TileScores
from pipelines.scoring import job as scoring
from pipelines.scoring.job import score
from pipelines.scoring.options import ScoreOptions

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

OPTIONS = ScoreOptions(min_area_m2=0.5, batch_size=4, progress=False)


class PoisonedPredictor(DarkBluePredictor):
    """Raises on batches showing a white pixel, the first ``failures`` times (counted in a file, across workers)."""

    def __init__(self, counter: Path, failures: int) -> None:
        super().__init__()
        self.counter, self.failures = counter, failures

    def predict(self, batch: np.ndarray) -> TileScores:
        unit = batch * np.reshape(STD, (1, 3, 1, 1)) + np.reshape(MEAN, (1, 3, 1, 1))
        if (unit > 0.98).all(axis=1).any():
            seen = len(self.counter.read_text()) if self.counter.exists() else 0
            if seen < self.failures:
                self.counter.write_text("x" * (seen + 1))
                raise RuntimeError("injected worker failure")
        return super().predict(batch)


class PlanRecorder(ModelPredictor):
    """A real (tiny) detector that appends every plan it is asked for to the file ``plans`` (across workers)."""

    plans: Path

    def plan(self, tiles: dict[int, int], batch_size: int) -> None:
        with self.plans.open("a") as log:
            log.write(json.dumps({"tiles": tiles, "batch_size": batch_size}) + "\n")
        super().plan(tiles, batch_size)


def _plan_recorder(plans: Path) -> PlanRecorder:
    torch.manual_seed(0)
    detector = models.create_model("panelnet", encoder="res2net_tiny").eval()
    recorder = fp32_predictor(detector, compile="off", kind=PlanRecorder)
    recorder.plans = plans
    return recorder


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    # Workers cannot import the test tree, so its predictors travel by value.
    for module in (fixtures.scenes, sys.modules[__name__]):
        ray.cloudpickle.register_pickle_by_value(module)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def scenes(tmp_path, monkeypatch) -> Path:
    """A folder of scenes; the large one splits into several strips whose seams panels cross."""
    monkeypatch.setattr(scoring, "STRIP_PIXELS", 8 * 300)
    monkeypatch.setattr(scoring, "UNIT_TILES", 12)
    folder = tmp_path / "scenes"
    folder.mkdir()
    write_scene(
        folder / "large.tif",
        width=300,
        height=170,
        panels=[(20, 10, 30, 280), (5, 285, 165, 292), (60, 40, 120, 90), (97, 200, 104, 240)],
    )
    write_scene(folder / "small.tif", width=64, height=48, panels=[(10, 10, 20, 30)], seed=1)
    write_scene(folder / "empty.tif", width=40, height=40, panels=[], seed=2, origin=(501_000.0, 5_300_000.0))
    poisoned = write_scene(folder / "poisoned.tif", width=50, height=40, panels=[(5, 5, 15, 25)], seed=3)
    with rasterio.open(poisoned.path, "r+") as dst:
        dst.write(np.full((3, 4, 4), 255, np.uint8), window=Window(40, 30, 4, 4))
    return folder


def _score(inputs, out, predictor, **options):
    return score(inputs, out, ScoreOptions(**{**vars(OPTIONS), **options}), predictor)


def _same_panels(a: Path, b: Path) -> None:
    left, right = gpd.read_parquet(a), gpd.read_parquet(b)
    assert len(left) > 0
    assert left.geometry.to_wkb().tolist() == right.geometry.to_wkb().tolist()
    assert left.drop(columns="geometry").equals(right.drop(columns="geometry"))


def test_ray_gives_the_local_output(scenes, tmp_path):
    local = _score(
        [scenes], tmp_path / "local.parquet", DarkBluePredictor(), tiles_csv=tmp_path / "local.csv"
    )
    distributed = _score(
        [scenes],
        tmp_path / "ray.parquet",
        DarkBluePredictor(),
        executor="ray",
        tiles_csv=tmp_path / "ray.csv",
    )
    assert distributed.exit_code == local.exit_code == 0
    assert (distributed.scored, distributed.panels, distributed.area_m2) == (4, local.panels, local.area_m2)
    _same_panels(tmp_path / "local.parquet", tmp_path / "ray.parquet")
    assert (tmp_path / "local.csv").read_text() == (tmp_path / "ray.csv").read_text()


def test_a_unit_that_raises_once_is_retried(scenes, tmp_path):
    _score([scenes], tmp_path / "local.parquet", DarkBluePredictor())
    flaky = PoisonedPredictor(tmp_path / "failures", failures=1)
    summary = _score([scenes], tmp_path / "ray.parquet", flaky, executor="ray")
    assert summary.exit_code == 0 and summary.scored == 4
    assert (tmp_path / "failures").read_text() == "x"  # it did fail once
    _same_panels(tmp_path / "local.parquet", tmp_path / "ray.parquet")


def test_a_unit_that_keeps_failing_is_reported_and_the_rest_delivered_and_resumable(scenes, tmp_path):
    out = tmp_path / "ray.parquet"
    broken = PoisonedPredictor(tmp_path / "failures", failures=100)
    summary = _score([scenes], out, broken, executor="ray")
    poisoned = str(scenes / "poisoned.tif")
    assert summary.exit_code == 1 and list(summary.failures) == [poisoned]
    assert summary.failures[poisoned].startswith(poisoned)
    assert (
        "failed 3 times" in summary.failures[poisoned]
        and "injected worker failure" in summary.failures[poisoned]
    )
    assert summary.scored == 3 and set(gpd.read_parquet(out)["source"]) == {
        str(scenes / "large.tif"),
        str(scenes / "small.tif"),
    }

    # The resume manifest works across executors: only the failed scene is scored again.
    again = _score([scenes], out, DarkBluePredictor(), executor="ray")
    assert (again.exit_code, again.scored, again.resumed) == (0, 1, 3)
    _score([scenes], tmp_path / "local.parquet", DarkBluePredictor())
    _same_panels(tmp_path / "local.parquet", out)


def test_every_ray_worker_plans_its_share_of_the_job(scenes, tmp_path):
    local_plans, ray_plans = tmp_path / "local-plans", tmp_path / "ray-plans"
    assert _score([scenes], tmp_path / "local.parquet", _plan_recorder(local_plans)).exit_code == 0
    [local] = [json.loads(line) for line in local_plans.read_text().splitlines()]
    assert _score([scenes], tmp_path / "ray.parquet", _plan_recorder(ray_plans), executor="ray").exit_code == 0
    shares = [json.loads(line) for line in ray_plans.read_text().splitlines()]
    assert len(shares) == 2  # one per worker of the 2-CPU cluster, none from the driver
    assert shares[0] == shares[1] and shares[0]["batch_size"] == local["batch_size"] == OPTIONS.batch_size
    # The large scene is cut into larger tiles than the small ones.
    assert len(local["tiles"]) == 2 and set(shares[0]["tiles"]) == set(local["tiles"])
    # Strips of a split scene score a few tiles twice, so each share is at least half the local job's tiles.
    for size, total in local["tiles"].items():
        assert -(-total // 2) <= shares[0]["tiles"][size] <= total


@pytest.mark.parametrize(
    ("nodes", "gpus_per_worker", "slots"),
    [
        ([{"CPU": 1, "GPU": 1}], 0.5, 1),  # two GPU shares, but one CPU
        ([{"CPU": 8, "GPU": 1}] * 3, 0.75, 3),  # 2.25 GPUs' worth of shares in all, one whole share per node
        ([{"CPU": 4, "GPU": 2}, {"CPU": 16}], 1, 2),  # the CPU-only node holds no GPU worker
        ([{"CPU": 4}, {"CPU": 2}], 0, 6),  # CPU workers: one per CPU
    ],
)
def test_workers_are_sized_to_what_each_live_node_holds(monkeypatch, nodes, gpus_per_worker, slots):
    from pipelines.scoring.executors.ray_executor import RayExecutor

    dead = {"Alive": False, "Resources": {"CPU": 64, "GPU": 8}}
    monkeypatch.setattr(ray, "nodes", lambda: [dead, *({"Alive": True, "Resources": r} for r in nodes)])
    options = ScoreOptions(executor="ray", num_gpus_per_worker=gpus_per_worker)
    assert RayExecutor(None, options)._slots() == slots
