"""The benchmark scripts' own helpers (the benchmarks themselves are run by ``make bench``, not by tests)."""

import importlib.util
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench_scoring():
    spec = importlib.util.spec_from_file_location("bench_scoring", ROOT / "benchmarks" / "bench_scoring.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scoring"] = module
    spec.loader.exec_module(module)
    return module


def test_gpu_utilisation_reads_nvidia_smi_samples(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    calls = tmp_path / "calls"
    # One utilisation per call, as nvidia-smi prints it: 12, 80, then [N/A] (not a sample), then 91 from then on.
    fake.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {calls} 2>/dev/null || echo 0); echo $((n + 1)) > {calls}\n"
        "case $n in 0) echo 12;; 1) echo 80;; 2) echo '[N/A]';; *) echo 91;; esac\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with _bench_scoring().GpuUtilisation() as gpu:
        deadline = time.monotonic() + 30
        while int((calls.read_text() or "0") if calls.exists() else 0) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert gpu.samples[:3] == [12.0, 80.0, 91.0] and set(gpu.samples[3:]) <= {91.0}
    assert gpu.summary().startswith("GPU busy ") and gpu.summary().endswith(f"({len(gpu.samples)} samples)")


def test_gpu_utilisation_is_not_sampled_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with _bench_scoring().GpuUtilisation() as gpu:
        pass
    assert gpu.summary() is None


def test_the_scene_is_the_bundled_fresno_scene_repeated_with_its_panel_tiles_where_it_says(tmp_path):
    import rasterio

    from data_catalog.sample import sample_scene

    sample = sample_scene()
    with rasterio.open(sample.path) as src:
        original = src.read([1, 2, 3])
    cell = sample.cell_px
    panel_tiles = [original[:, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] for r, c in sample.panel_cells]
    views = [np.rot90(t, k, axes=(1, 2)) for t in panel_tiles for k in range(4)]
    views += [v[:, :, ::-1] for v in views]
    size = 2 * original.shape[1]  # 2 x 2 copies
    boxes = _bench_scoring().write_scene(tmp_path / "scene.tif", size)
    assert len(boxes) == 4 * len(sample.panel_cells)
    with rasterio.open(tmp_path / "scene.tif") as src:
        assert (src.width, src.height, src.res) == (size, size, (0.3, 0.3))
        scene = src.read()
    for r0, c0, r1, c1 in boxes:
        assert (r1 - r0, c1 - c0) == (cell, cell)
        assert any(np.array_equal(scene[:, r0:r1, c0:c1], v) for v in views)
