"""Where and how a model runs: device choice, autocast precision, memory layout."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX or AVX512-BF16), where bf16 autocast pays."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


@dataclass(frozen=True)
class Runtime:
    """Execution settings shared by scoring and training."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full fp32
    channels_last: bool = True

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto", channels_last: bool | None = None) -> Runtime:
        """Pick a device ('auto' prefers CUDA), a precision ('auto': bf16 on CPUs with bf16 matrix units,
        bf16/fp16 AMP on CUDA) and a memory layout (None: channels_last, measured faster for this network in fp32
        on an AVX2 CPU as well as with reduced precision)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device} was asked for but no CUDA device is available; use --device cpu")
        if precision == "auto":
            if dev.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                dtype = torch.bfloat16 if cpu_supports_bf16() else None
        elif precision == "fp32":
            dtype = None
        elif precision == "bf16":
            dtype = torch.bfloat16
        elif precision == "fp16":
            dtype = torch.float16
        else:
            raise ValueError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
        return cls(dev, dtype, True if channels_last is None else channels_last)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move a model to the device and memory layout."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def to_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Move an input batch to the device and memory layout."""
        batch = batch.to(self.device, non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast to the chosen reduced precision, or nothing for fp32."""
        if self.autocast_dtype is None:
            yield
        else:
            with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
                yield
