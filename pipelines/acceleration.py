"""The fast inference path of a PanelNet: exact BatchNorm folding and reduced-precision weights always, an
ahead-of-time compiled encoder (AOTInductor) when the job pays for it or an earlier job already compiled it.

Compiling Res2NetPlus50 costs tens of seconds, so 'auto' compiles only jobs of at least ``COMPILE_MIN_PIXELS``
tile pixels, and only where compiling was measured to pay: on CUDA and with reduced precision on CPUs with bf16
matrix units (AMX / AVX512-BF16). In fp32 on an AVX2-only CPU the compiled encoder was measured no faster than the
folded eager one (benchmarks/README.md). The compiled package is kept in the user cache folder, keyed by the
weights, the batch shape, the machine and the torch version, and loads in under two seconds (mostly importing
the compiler), so every later job of that shape from ``CACHED_MIN_PIXELS`` on uses it. Compiled encoders see one
fixed batch shape: short batches are zero-padded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models import PanelNet
from models.fusion import fuse_for_inference, uses_fast_mish
from pipelines.runtime import Runtime

log = logging.getLogger(__name__)
# The compiler imports torch's C++ extension module, which warns "No CUDA runtime is found, using CUDA_HOME" on every
# CPU-only machine that has a CUDA toolkit: nothing a user of scoring can act on.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

COMPILE_POLICIES = ("auto", "on", "off")
# Break-even job size for 'auto', in tile pixels: on a 2-core AVX512-BF16 CPU compiling took 26 s from a cold
# cache and saved 7.2 ms per 128 px tile in bf16 (81 -> 195 tiles/s), so it pays back after ~3,600 such tiles
# (60 Mpx); rounded up so a job that compiles clearly gains (benchmarks/README.md).
COMPILE_MIN_PIXELS = 80_000_000
# Using a package an earlier job compiled costs its loading, mostly importing the compiler (1.4 s, plus 0.3 s to load
# the package): measured on the same CPU with the shipped model, a cached package made a 1,024 px scene (25 tiles of
# 256 px, 1.6 Mpx) 1.2 s slower and a 2,048 px one (121 tiles, 7.9 Mpx) 1.3 s faster than the eager encoder.
CACHED_MIN_PIXELS = 6_000_000

Encoder = Callable[[torch.Tensor], list[torch.Tensor]]


def user_cache_dir() -> Path:
    """Where solarscan keeps caches: ``$XDG_CACHE_HOME/solarscan`` (default ``~/.cache/solarscan``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "solarscan"


def compile_pays(policy: str, pixels: int, runtime: Runtime, compiled_before: bool = False) -> bool:
    """Whether to use a compiled encoder for a job of ``pixels`` tile pixels (tiles x tile area) on ``runtime``
    under ``policy`` ('auto', 'on' or 'off'); ``compiled_before``: its package is already in the cache, so the job
    only has to load it (worth it from ``CACHED_MIN_PIXELS``) rather than compile it (from ``COMPILE_MIN_PIXELS``)."""
    if policy not in COMPILE_POLICIES:
        raise ValueError(f"unknown compile policy {policy!r}; use one of {', '.join(COMPILE_POLICIES)}")
    if policy != "auto":
        return policy == "on"
    fast_target = runtime.device.type == "cuda" or runtime.autocast_dtype is not None
    return fast_target and pixels >= (CACHED_MIN_PIXELS if compiled_before else COMPILE_MIN_PIXELS)


def inference_copy(model: PanelNet, dtype: torch.dtype | None = None) -> PanelNet:
    """An inference-only copy of a detector with every BatchNorm folded (outputs equal to fp32 rounding) and,
    given a reduced-precision ``dtype``, its weights in it: under autocast the weights would otherwise be cast
    again on every batch (measured: 9 % of a bf16 encoder pass), and scale-and-shift buffers kept in fp32 would
    promote each activation back to fp32."""
    fused = fuse_for_inference(model)
    return fused.to(dtype) if dtype is not None else fused


class _Encoder(nn.Module):
    """``model.encode`` as a module, the unit ``torch.export`` takes."""

    def __init__(self, model: PanelNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.encode(x)


def encoder_digest(model: PanelNet) -> str:
    """A digest of the encoder's weights (names, shapes, dtypes and values): hashing them reads every weight,
    so a caller that plans many jobs for one model keeps it."""
    digest = hashlib.sha256()
    for name, tensor in model.encoder.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def package_key(weights: str, example: torch.Tensor) -> str:
    """What a compiled encoder depends on: the weights (``encoder_digest``), the input's shape, dtype, layout and
    device, this torch and the CPU's vector instructions."""
    digest = hashlib.sha256(weights.encode())
    digest.update(f"{tuple(example.shape)}:{example.dtype}:{_layout(example)}:{example.device}".encode())
    digest.update(f"{torch.__version__}:{torch.backends.cpu.get_cpu_capability()}".encode())
    return digest.hexdigest()[:24]


def package_path(weights: str, example: torch.Tensor) -> Path:
    """Where the compiled encoder for weights with digest ``weights`` and inputs like ``example`` is kept."""
    return user_cache_dir() / "compiled" / f"encoder-{package_key(weights, example)}.pt2"


def compiled_encoder(model: PanelNet, example: torch.Tensor, path: Path | None = None) -> Encoder:
    """``model.encode`` compiled ahead of time (AOTInductor, freezing) for batches shaped like ``example``
    (shorter ones are zero-padded), loaded from the user cache when an earlier job compiled it.

    The encoder's Mish is switched (in place) to the single-exponential formulation, which inductor fuses into
    one vectorised pass with the scale, shift and residual add around it. Compiling takes tens of seconds;
    loading a compiled package under two (mostly importing the compiler). ``path``: the package's
    ``package_path`` when the caller already has it (finding it hashes every weight).
    """
    import torch._inductor  # here, not at import: it takes a second to import, and most small jobs never compile

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir() / "inductor"))
    uses_fast_mish(model.encoder)
    path = path or package_path(encoder_digest(model), example)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("compiling the encoder for %s batches (once per model and machine) into %s",
                 tuple(example.shape), path)
        with torch.inference_mode():
            program = torch.export.export(_Encoder(model).eval(), (example,))
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.pt2")
        try:
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(partial), inductor_configs={"freezing": True}
            )
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    compiled = torch._inductor.aoti_load_package(str(path))
    batch_size, layout = example.shape[0], _layout(example)

    def encode(x: torch.Tensor) -> list[torch.Tensor]:
        n = x.shape[0]
        if n > batch_size:
            raise ValueError(f"the encoder was compiled for batches of {batch_size}, got {n} tiles")
        if n < batch_size:
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, batch_size - n))
        features = compiled(x.contiguous(memory_format=layout))
        return [f[:n] for f in features] if n < batch_size else list(features)

    return encode


def _layout(x: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    )
