"""cggm_core: CGGM and baseline balancing methods, the per-modality probe, data, models, trainer.

The public names load lazily (PEP 562): `import cggm_core` alone does not import torch, so that
the backend, which only needs the registries, stays small.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AuxHeads": "models",
    "ConcatFusion": "models",
    "MultimodalNet": "models",
    "Stepper": "step",
    "Task": "tasks",
    "classification": "tasks",
    "regression": "tasks",
    "JsonlSink": "tracking",
    "MemorySink": "tracking",
    "Point": "tracking",
}

__all__ = [
    "AuxHeads",
    "ConcatFusion",
    "JsonlSink",
    "MemorySink",
    "MultimodalNet",
    "Point",
    "Stepper",
    "Task",
    "classification",
    "regression",
]

if TYPE_CHECKING:  # the names as type checkers see them
    from .models import AuxHeads, ConcatFusion, MultimodalNet
    from .step import Stepper
    from .tasks import Task, classification, regression
    from .tracking import JsonlSink, MemorySink, Point


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cggm_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
