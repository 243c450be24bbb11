"""The fast inference path of a PanelNet: exact BatchNorm folding and reduced-precision weights always,
``torch.compile`` when the job pays for it.

Compiling Res2NetPlus50 costs tens of seconds, so 'auto' compiles only jobs of at least ``COMPILE_MIN_PIXELS``
tile pixels, and only where compiling was measured to pay: on CUDA and with reduced precision on CPUs with bf16
matrix units (AMX / AVX512-BF16). In fp32 on an AVX2-only CPU the compiled encoder was measured no faster than the
folded eager one (benchmarks/README.md). Inductor's caches live in the user cache folder so a later process
compiles faster. Compiled encoders see one fixed batch shape: short batches are zero-padded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from models import PanelNet
from models.fusion import fuse_for_inference, uses_fast_mish
from pipelines.runtime import Runtime

COMPILE_POLICIES = ("auto", "on", "off")
# Break-even job size for 'auto', in tile pixels: on a 2-core AVX512-BF16 CPU compiling took 26 s from a cold
# cache and saved 7.2 ms per 128 px tile in bf16 (81 -> 195 tiles/s), so it pays back after ~3,600 such tiles
# (60 Mpx); rounded up so a job that compiles clearly gains (benchmarks/README.md).
COMPILE_MIN_PIXELS = 80_000_000

Encoder = Callable[[torch.Tensor], list[torch.Tensor]]


def user_cache_dir() -> Path:
    """Where solarscan keeps caches: ``$XDG_CACHE_HOME/solarscan`` (default ``~/.cache/solarscan``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "solarscan"


def compile_pays(policy: str, pixels: int, runtime: Runtime) -> bool:
    """Whether to compile for a job of ``pixels`` tile pixels (tiles x tile area) on ``runtime`` under ``policy``
    ('auto', 'on' or 'off')."""
    if policy not in COMPILE_POLICIES:
        raise ValueError(f"unknown compile policy {policy!r}; use one of {', '.join(COMPILE_POLICIES)}")
    if policy != "auto":
        return policy == "on"
    fast_target = runtime.device.type == "cuda" or runtime.autocast_dtype is not None
    return fast_target and pixels >= COMPILE_MIN_PIXELS


def inference_copy(model: PanelNet, dtype: torch.dtype | None = None) -> PanelNet:
    """An inference-only copy of a detector with every BatchNorm folded (outputs equal to fp32 rounding) and,
    given a reduced-precision ``dtype``, its weights in it: under autocast the weights would otherwise be cast
    again on every batch (measured: 9 % of a bf16 encoder pass), and scale-and-shift buffers kept in fp32 would
    promote each activation back to fp32."""
    fused = fuse_for_inference(model)
    return fused.to(dtype) if dtype is not None else fused


def compiled_encoder(model: PanelNet, batch_size: int) -> Encoder:
    """``model.encode`` compiled with freezing for batches of exactly ``batch_size`` (shorter ones are padded).

    The encoder's Mish is switched (in place) to the single-exponential formulation, which inductor fuses into
    one vectorised pass with the scale, shift and residual add around it.

    Inductor's FX-graph and kernel caches live under ``user_cache_dir()`` unless ``TORCHINDUCTOR_CACHE_DIR`` says
    otherwise, so only the first job on a machine pays the full compile.
    """
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir() / "inductor"))
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    inductor_config.fx_graph_cache = True
    uses_fast_mish(model.encoder)
    compiled = torch.compile(model.encode, dynamic=False)

    def encode(x: torch.Tensor) -> list[torch.Tensor]:
        n = x.shape[0]
        if n == batch_size:
            return compiled(x)
        if n > batch_size:
            raise ValueError(f"the encoder was compiled for batches of {batch_size}, got {n} tiles")
        padded = F.pad(x, (0, 0, 0, 0, 0, 0, 0, batch_size - n)).contiguous(memory_format=_layout(x))
        return [f[:n] for f in compiled(padded)]

    return encode


def _layout(x: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    )
