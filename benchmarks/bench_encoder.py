"""Encoder throughput at 256x256: Res2NetPlus50 under each optimisation against fp32 eager contiguous, and ResNet-50.

All rows come from one process, so their ratios are comparable even on a busy machine. Reduced-precision rows run
the weights and the input in bf16 (on CUDA: bf16 too), as the product does; they need bf16 matrix units
(AMX / AVX512-BF16) or CUDA and are skipped where the hardware lacks them: bf16 is emulated on other CPUs and
measured about 10x slower than fp32. Compiled Res2NetPlus50 rows use the single-exponential Mish, as the product's
compiled encoder does.

    python benchmarks/bench_encoder.py [--quick] [--batch 16] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models
from models.fusion import fuse_for_inference
from pipelines.acceleration import compiled_encoder
from pipelines.runtime import cpu_supports_bf16


def _compiled(model: nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], object]:
    """Res2NetPlus50 as the product compiles it (AOTInductor package, in a fresh cache: a cold compile);
    ResNet-50 with ``torch.compile``."""
    if isinstance(model, models.PanelNet):
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="solarscan-bench-cache-")
        return compiled_encoder(model, x)
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model)


def measure(
    model: nn.Module,
    x: torch.Tensor,
    reps: int,
    channels_last: bool,
    dtype: torch.dtype | None,
    compile: bool,
) -> tuple[float, float]:
    """(images per second over the median of ``reps`` timed batches, seconds until the first output) of ``model``
    on batch ``x``."""
    model = copy.deepcopy(model).to(x.device)
    if dtype is not None:
        model, x = model.to(dtype), x.to(dtype)
    if channels_last:
        model, x = (
            model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    start = time.perf_counter()
    with torch.inference_mode():
        if compile:
            run = _compiled(model, x)
        else:
            run = model.encode if isinstance(model, models.PanelNet) else model
        run(x)
        first = time.perf_counter() - start
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            run(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return x.shape[0] / statistics.median(times), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 4, one timed pass, no compiled rows")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5, help="timed batches per row (median)")
    parser.add_argument(
        "--compile", action="store_true", help="add torch.compile rows (minutes on a small CPU)"
    )
    args = parser.parse_args()
    batch, reps = (4, 1) if args.quick else (args.batch, args.reps)
    compile_rows = args.compile and not args.quick
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    low = torch.bfloat16 if device.type == "cuda" or cpu_supports_bf16() else None

    torch.manual_seed(0)
    plus = models.create_model("panelnet_res2netplus50").eval()  # measured: its encoder (``encode``)
    for m in plus.modules():  # trained-like statistics, so folding does real work
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
    folded = fuse_for_inference(plus)
    from torchvision.models import resnet50

    resnet = resnet50().eval()
    x = torch.randn(batch, 3, 256, 256, device=device)

    rows: list[tuple[str, nn.Module, bool, torch.dtype | None, bool]] = [
        ("res2netplus50 fp32 eager contiguous (baseline)", plus, False, None, False),
        ("res2netplus50 fp32 eager channels_last", plus, True, None, False),
        ("res2netplus50 folded fp32 eager channels_last", folded, True, None, False),
        ("resnet50 fp32 eager channels_last", resnet, True, None, False),
    ]
    if low is not None:
        rows += [
            ("res2netplus50 folded bf16 eager channels_last", folded, True, low, False),
            ("resnet50 bf16 eager channels_last", resnet, True, low, False),
        ]
    if compile_rows:
        rows += [
            ("res2netplus50 folded bf16 AOTInductor+freezing channels_last", folded, True, low, True),
            ("resnet50 bf16 compile+freezing channels_last", resnet, True, low, True),
        ] if low is not None else [
            ("res2netplus50 folded fp32 AOTInductor+freezing channels_last", folded, True, None, True),
            ("resnet50 fp32 compile+freezing channels_last", resnet, True, None, True),
        ]
    print(
        f"{device}, {torch.get_num_threads()} threads, batch {batch} x 256x256, bf16 units: {low is not None}"
    )
    print(f"{'configuration':<60}{'img/s':>8}{'ratio':>8}{'first s':>9}")
    base = None
    best: dict[str, float] = {}
    for name, model, channels_last, dtype, compile in rows:
        rate, first = measure(model, x, reps, channels_last, dtype, compile)
        base = base or rate
        family = name.split()[0]
        best[family] = max(best.get(family, 0.0), rate)
        print(f"{name:<60}{rate:>8.2f}{rate / base:>8.2f}{first:>9.1f}", flush=True)
        torch._dynamo.reset()
    print(f"best res2netplus50 / baseline: {best['res2netplus50'] / base:.2f}x; "
          f"time of best res2netplus50 / best resnet50: {best['resnet50'] / best['res2netplus50']:.2f}x")
    if low is None:
        print("bf16 rows skipped: this CPU has no AMX / AVX512-BF16 (bf16 would be emulated)")


if __name__ == "__main__":
    main()
