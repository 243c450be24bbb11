"""End-to-end scoring benchmark: a plain baseline, the product and its encoder alone on one scene, in one invocation.

The scene is generated deterministically into a temporary folder: a tiled, deflate-compressed 3-band GeoTIFF at
0.3 m of real tiles, the bundled Fresno scene (8 x 8 USGS tiles, 3 with rooftop arrays: about 5 % of the ground)
laid side by side in random flips and turns. Each configuration runs in its own child process, so peak RSS and
start-up are its own:

- ``baseline``: the same network, fp32 eager, contiguous, no BatchNorm folding, the decoder on every tile;
- ``product``: ``load_predictor`` as ``solarscan score`` uses it (precision, layout, folding, compile policy and
  classifier gating chosen by the product), run twice on an empty compile cache of its own: ``product`` pays for
  compiling the encoder where the policy compiles (a user's first big job), ``product-warm`` loads the compiled
  package as every later job does;
- ``encoder``: the product's encoder alone (compiled the same way, from the same package) on as many tiles of the
  same size as scoring cuts the scene into, on random input: what scoring would cost if nothing else did. The
  ratio of ``product-warm`` to it is the share of the encoder's rate that scoring keeps end to end.

Without ``--model`` the network is a freshly initialised ``panelnet_res2netplus50`` with BatchNorm statistics
like a trained one's. An untrained classifier cannot find the panel tiles, so the product's gate threshold is set
from the baseline's tile probabilities to pass as many tiles as hold panels: the compute is the product's, the
detections are not meaningful.

``--memory`` instead measures peak RSS of scoring two scene sizes with a stand-in predictor (no network).

    python benchmarks/bench_scoring.py [--quick] [--size 10000] [--model BUNDLE] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GSD_M = 0.3
BUNDLE_TILE = 128  # the tile size of the benchmark's bundles
MEAN, STD = [0.4, 0.45, 0.35], [0.2, 0.2, 0.2]
BLOCK = 512  # GeoTIFF block and generation window


def write_scene(path: Path, size: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """A size x size scene of real tiles: the bundled Fresno scene (8 x 8 USGS tiles of 30 m at 0.3 m, public
    domain; 3 of them with rooftop arrays) laid side by side, each copy in a random one of its eight flips and
    turns. Returns the boxes (row0, col0, row1, col1) of the tiles with panels."""
    import rasterio
    from affine import Affine

    from data_catalog.sample import sample_scene

    sample = sample_scene()
    with rasterio.open(sample.path) as src:
        pixels = src.read([1, 2, 3])
    span, cell = pixels.shape[1], sample.cell_px
    labels = np.zeros((span // cell, span // cell), bool)
    labels[tuple(np.array(sample.panel_cells).T)] = True

    def view(array: np.ndarray, k: int) -> np.ndarray:
        turned = np.rot90(array, k % 4, axes=(-2, -1))
        return np.ascontiguousarray(turned[..., ::-1] if k >= 4 else turned)

    views = [(view(pixels, k), view(labels, k)) for k in range(8)]
    copies = -(-size // span)
    orientation = np.random.default_rng(seed).integers(8, size=(copies, copies))
    boxes = [
        (i * span + r * cell, j * span + c * cell, min(size, i * span + (r + 1) * cell),
         min(size, j * span + (c + 1) * cell))
        for i in range(copies) for j in range(copies)
        for r, c in zip(*np.nonzero(views[orientation[i, j]][1]))
        if i * span + r * cell < size and j * span + c * cell < size
    ]
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32611",
        "transform": Affine(GSD_M, 0, 250_000.0, 0, -GSD_M, 4_070_000.0),
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "photometric": "RGB",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, BLOCK):
            for col in range(0, size, BLOCK):
                h, w = min(BLOCK, size - row), min(BLOCK, size - col)
                block = np.empty((3, h, w), np.uint8)
                for i in range(row // span, (row + h - 1) // span + 1):
                    for j in range(col // span, (col + w - 1) // span + 1):
                        top, left = max(i * span, row), max(j * span, col)
                        bottom, right = min((i + 1) * span, row + h), min((j + 1) * span, col + w)
                        block[:, top - row:bottom - row, left - col:right - col] = views[orientation[i, j]][0][
                            :, top - i * span:bottom - i * span, left - j * span:right - j * span]
                dst.write(block, window=rasterio.windows.Window(col, row, w, h))
    return boxes


def write_bundle(path: Path) -> Path:
    """A freshly initialised detector with trained-like BatchNorm statistics (seeded)."""
    import torch
    from torch import nn

    import models

    torch.manual_seed(0)
    model = models.create_model("panelnet_res2netplus50").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        # Tile logits of a few units: a random classifier on these features saturates at probability 1 for
        # every tile, and a gate could then not pass a chosen fraction of them.
        pooled = model.encode(torch.randn(4, 3, 2 * BUNDLE_TILE, 2 * BUNDLE_TILE))[-1].mean(dim=(2, 3))
        head = model.classifier[-1]
        head.weight.normal_(0.0, 2.0 / (float(pooled.std()) * pooled.shape[1] ** 0.5))
        head.bias.fill_(-float((pooled @ head.weight.T).mean()))
    metadata = models.BundleMetadata(
        architecture="panelnet_res2netplus50",
        model_kwargs={},
        bands=["red", "green", "blue"],
        norm_mean=MEAN,
        norm_std=STD,
        gsd_m=GSD_M,
        tile_size=BUNDLE_TILE,
    )
    return models.save_bundle(path, model, metadata)


class PlainPredictor:
    """The baseline: fp32 eager forward of the whole network on every tile, default memory layout."""

    def __init__(self, bundle_path: Path) -> None:
        import models

        bundle = models.load_bundle(bundle_path)
        self.model, self.metadata = bundle.model.eval(), bundle.metadata
        self.name = "plain fp32 eager"
        self.tile_probabilities: list[np.ndarray] = []

    def predict(self, batch: np.ndarray):
        import torch

        from pipelines.predictors import TileScores, tile_logits
        from pipelines.tiling import tile_window
        from pipelines.timing import stage

        size = batch.shape[-1]
        with stage("model"), torch.inference_mode():
            features = self.model.encode(torch.from_numpy(batch))
            window = tile_window(size, self.metadata.tile_size)
            tile = torch.sigmoid(tile_logits(self.model, features, window)).numpy()
            maps = torch.sigmoid(self.model.segment(features, (size, size)))[:, 0].numpy()
        self.tile_probabilities.append(tile)
        return TileScores(tile, maps, np.ones(len(batch), bool))

    def presence(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from pipelines.timing import stage

        with stage("model"), torch.inference_mode():
            return torch.sigmoid(self.model.classify(self.model.encode(torch.from_numpy(batch)))).numpy()


class StandInPredictor:
    """No network: 'panel' wherever the blue band is darkest, for measuring everything around the model."""

    name = "stand-in"

    def __init__(self) -> None:
        from models import BundleMetadata

        self.metadata = BundleMetadata(
            architecture="stand_in",
            model_kwargs={},
            bands=["red", "green", "blue"],
            norm_mean=MEAN,
            norm_std=STD,
            gsd_m=GSD_M,
            tile_size=BUNDLE_TILE,
        )

    def predict(self, batch: np.ndarray):
        from pipelines.predictors import TileScores

        maps = (batch[:, 2] > batch[:, 0] + 1.0).astype(np.float32)
        return TileScores(maps.max(axis=(1, 2)), maps, np.ones(len(batch), bool))


class GpuUtilisation:
    """Samples the GPU's utilisation with ``nvidia-smi`` about every 200 ms while scoring runs (on a CUDA machine
    whose driver ships it): does reading and preprocessing keep the GPU busy?"""

    def __enter__(self) -> Self:
        import shutil
        import threading

        import torch

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = None
        if torch.cuda.is_available() and shutil.which("nvidia-smi") is not None:
            command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                       "-i", str(torch.cuda.current_device())]
            self._thread = threading.Thread(target=self._sample, args=(command,), daemon=True)
            self._thread.start()
        return self

    def _sample(self, command: list[str]) -> None:
        while not self._stop.wait(0.2):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            self.samples += [float(v) for v in done.stdout.split() if v.isdigit()]

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> str | None:
        """Mean and median utilisation over the run, or None where it was not sampled."""
        if not self.samples:
            return None
        return f"GPU busy {np.mean(self.samples):.0f} % mean, {np.median(self.samples):.0f} % median " \
               f"({len(self.samples)} samples)"


def encoder_only(args: argparse.Namespace) -> dict:
    """Run the product's encoder alone over as many tiles as scoring cuts the scene into, in the same batches,
    compiled as scoring compiles it (``ModelPredictor.plan``)."""
    from collections import Counter

    import rasterio
    import torch

    from pipelines.predictors import load_predictor
    from pipelines.tiling import batch_tiles

    start = time.perf_counter()
    predictor = load_predictor(args.bundle, compile=args.compile)
    with rasterio.open(args.scene) as src:
        width = src.width
    sizes = Counter(t.size for t in scene_tiles_of(width, predictor.metadata.tile_size))
    predictor.plan(dict(sizes), args.batch_size)
    bands, runtime = len(predictor.metadata.bands), predictor.runtime
    encode_start = time.perf_counter()
    with torch.inference_mode(), runtime.autocast():
        for size, count in sizes.items():
            batch = min(count, batch_tiles(args.batch_size, size, predictor.metadata.tile_size))
            x = runtime.to_input(torch.randn(batch, bands, size, size)).to(predictor.dtype)
            encode, _ = predictor.encoder_for(x)
            for done in range(0, count, batch):
                features = encode(x[: min(batch, count - done)])
        float(features[-1].float().sum())  # waits for a GPU to finish
    end = time.perf_counter()
    return {"run": "encoder", "seconds": end - encode_start, "process_seconds": end - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "segmented_tiles": 0,
            "runtime": f"{runtime.device.type} {runtime.autocast_dtype or 'fp32'} cl={runtime.channels_last}"}


def run_child(args: argparse.Namespace) -> None:
    """Score the scene with one configuration and print one JSON line of measurements."""
    if args.run == "encoder":
        print(json.dumps(encoder_only(args)))
        return
    start = time.perf_counter()
    from pipelines.predictors import load_predictor
    from pipelines.scoring.job import score
    from pipelines.scoring.options import ScoreOptions
    from pipelines.timing import reset_stages, stage_seconds

    options = ScoreOptions(
        progress=False,
        batch_size=args.batch_size,
        compile=args.compile,
        gate_threshold=args.gate_threshold,
        gate=args.run != "baseline",
        resume=False,
    )
    if args.run == "baseline":
        predictor = PlainPredictor(args.bundle)
    elif args.run == "stand-in":
        predictor = StandInPredictor()
    else:
        predictor = load_predictor(args.bundle, gate_threshold=args.gate_threshold, compile=args.compile)
    segmented = []
    predict = predictor.predict

    def counting_predict(batch):
        scores = predict(batch)
        segmented.append(int(scores.segmented.sum()))
        return scores

    predictor.predict = counting_predict
    reset_stages()
    scoring_start = time.perf_counter()
    with GpuUtilisation() as gpu:
        summary = score([args.scene], args.workdir / f"{args.run}.gpkg", options, predictor)
    end = time.perf_counter()
    result = {
        "run": args.run,
        "seconds": end - scoring_start,
        "process_seconds": end - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stages": stage_seconds(),
        "panels": summary.panels,
        "segmented_tiles": sum(segmented),
        "failures": summary.failures,
        "gpu": gpu.summary(),
    }
    if isinstance(predictor, PlainPredictor):
        result["tile_probabilities"] = np.concatenate(predictor.tile_probabilities).tolist()
    if hasattr(predictor, "runtime"):
        rt = predictor.runtime
        result["runtime"] = f"{rt.device.type} {rt.autocast_dtype or 'fp32'} cl={rt.channels_last}"
    print(json.dumps(result))


def child(
    run: str, scene: Path, bundle: Path | None, workdir: Path, args: argparse.Namespace, label: str | None = None,
    **extra,
) -> dict:
    command = [
        sys.executable,
        __file__,
        "--run",
        run,
        "--scene",
        str(scene),
        "--workdir",
        str(workdir),
        "--batch-size",
        str(args.batch_size),
        "--compile",
        args.compile,
    ]
    if bundle is not None:
        command += ["--bundle", str(bundle)]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "XDG_CACHE_HOME": str(workdir / "cache")}  # compiled encoders: this run's own
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{run} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["run"] = label or run
    return result


def scene_tiles_of(size: int, bundle_tile: int) -> list:
    """The tiles scoring cuts a square scene of ``size`` model pixels into."""
    from pipelines.tiling import DEFAULT_OVERLAP, ModelGrid, scene_tiles

    return scene_tiles(ModelGrid(size, size, 1.0, 1.0), bundle_tile, DEFAULT_OVERLAP)


def stage_table(results: list[dict]) -> str:
    from pipelines.timing import STAGES

    lines = ["stage seconds (reader threads overlap inference, so stages can sum past wall time):"]
    lines.append(f"{'stage':<10}" + "".join(f"{r['run']:>14}" for r in results))
    for name in STAGES:
        lines.append(f"{name:<10}" + "".join(f"{r['stages'][name]:>14.1f}" for r in results))
    lines.append(f"{'wall':<10}" + "".join(f"{r['seconds']:>14.1f}" for r in results))
    return "\n".join(lines)


def throughput(args: argparse.Namespace, workdir: Path) -> None:
    size = args.size
    scene = workdir / "scene.tif"
    t = time.perf_counter()
    panels = write_scene(scene, size)
    bundle = args.model or write_bundle(workdir / "fresh.safetensors")
    from models import read_metadata

    cut = scene_tiles_of(size, read_metadata(bundle).tile_size)
    tile, tiles = cut[0].size, len(cut)
    panel_tiles = sum(
        any(r0 < t.row + t.size and r1 > t.row and c0 < t.col + t.size and c1 > t.col for r0, c0, r1, c1 in panels)
        for t in cut
    )
    area_km2 = (size * GSD_M) ** 2 / 1e6
    print(
        f"scene {size}x{size} px at {GSD_M} m = {area_km2:.2f} km2, {tiles} tiles of {tile} px, "
        f"{panel_tiles} with panels (generated in {time.perf_counter() - t:.0f} s)",
        flush=True,
    )
    baseline = child("baseline", scene, bundle, workdir, args)
    probabilities = np.sort(np.asarray(baseline.pop("tile_probabilities")))
    gate = float(probabilities[-panel_tiles]) if args.model is None else None
    extra = {"gate_threshold": gate} if gate is not None else {}
    product = child("product", scene, bundle, workdir, args, **extra)
    warm = child("product", scene, bundle, workdir, args, label="product-warm", **extra)
    encoder = child("encoder", scene, bundle, workdir, args)
    print(f"{'run':<13}{'tiles/s':>10}{'km2/h':>10}{'ratio':>8}{'peak RSS MB':>13}{'process s':>11}"
          f"{'decoded':>9}  runtime")
    for r in (baseline, product, warm, encoder):
        print(
            f"{r['run']:<13}{tiles / r['seconds']:>10.2f}{area_km2 / r['seconds'] * 3600:>10.2f}"
            f"{baseline['seconds'] / r['seconds']:>8.2f}{r['peak_rss_mb']:>13.0f}{r['process_seconds']:>11.1f}"
            f"{r['segmented_tiles']:>9}"
            f"  {r.get('runtime', 'fp32 eager contiguous, no gate')}"
        )
    print(f"end to end (product-warm) / encoder alone: {encoder['seconds'] / warm['seconds']:.0%} of the encoder's "
          f"rate; first job / warm job: {product['process_seconds'] / warm['process_seconds']:.2f}x (process time)")
    print(stage_table([baseline, product, warm]))
    for r in (baseline, product, warm):
        if r["gpu"]:
            print(f"{r['run']}: {r['gpu']}")


def memory(args: argparse.Namespace, workdir: Path) -> None:
    sizes = (args.size, args.size * 2)
    print(
        f"peak RSS of scoring with a stand-in predictor (no network), scenes {sizes[0]} and {sizes[1]} px square"
    )
    rows = []
    for size in sizes:
        scene = workdir / f"scene-{size}.tif"
        write_scene(scene, size)
        r = child("stand-in", scene, None, workdir, args)
        rows.append((size, r))
        scene.unlink()
        print(
            f"{size:>6} px: peak RSS {r['peak_rss_mb']:.0f} MB, {r['seconds']:.0f} s, {r['panels']} panels",
            flush=True,
        )
    print(f"RSS growth for 4x the area: {rows[1][1]['peak_rss_mb'] / rows[0][1]['peak_rss_mb'] - 1:+.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1536 px scene (memory: 4096 and 8192 px)")
    parser.add_argument("--size", type=int, default=None, help="scene width and height in px (default 10000)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"))
    parser.add_argument(
        "--model", type=Path, default=None, help="a trained bundle instead of a fresh network"
    )
    parser.add_argument("--memory", action="store_true", help="measure peak RSS against scene size instead")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gate-threshold", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_child(args)
        return
    if args.size is None:
        args.size = (4096 if args.memory else 1536) if args.quick else (20000 if args.memory else 10000)
    print(f"{os.cpu_count()} CPUs, torch threads default; figures from one invocation (compare ratios)")
    with tempfile.TemporaryDirectory(prefix="solarscan-bench-") as tmp:
        (memory if args.memory else throughput)(args, Path(tmp))


if __name__ == "__main__":
    main()
