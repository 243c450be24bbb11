"""Model registry: ``create_model(name, **kwargs)`` builds any registered architecture."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from models.errors import UnknownModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model constructor under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the architecture registered as ``name`` with constructor keyword arguments."""
    try:
        constructor = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    return constructor(**kwargs)
