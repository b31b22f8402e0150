"""Model definitions, the model registry and the in-process ONNX runner.

Importing this package is cheap: torch is only imported by ``efficientnet_lite`` (export and tests).
"""

from models.registry import SPECS, ModelSpec, get_spec, list_models, pull, verify

__all__ = ["SPECS", "ModelSpec", "get_spec", "list_models", "pull", "verify"]
