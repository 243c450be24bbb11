"""Pure PyTorch models of solarscan: encoders, the PanelNet detector, the registry and checkpoint bundles."""

from models import panelnet, res2net, resnet  # noqa: F401  (registers the architectures)
from models.checkpoint import (
    Bundle,
    BundleMetadata,
    build_model,
    json_null_nan,
    load_bundle,
    read_metadata,
    rewrite_metadata,
    save_bundle,
)
from models.errors import BundleError, BundleNotFoundError, ModelError, UnknownModelError
from models.panelnet import PanelNet, PanelOutput
from models.registry import create_model, list_models, register_model
from models.res2net import Res2Net

__all__ = [
    "Bundle", "BundleError", "BundleMetadata", "BundleNotFoundError", "ModelError", "PanelNet", "PanelOutput",
    "Res2Net", "UnknownModelError", "build_model", "create_model", "json_null_nan", "list_models", "load_bundle",
    "read_metadata", "register_model", "rewrite_metadata", "save_bundle",
]
