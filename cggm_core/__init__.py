"""cggm_core: CGGM and baseline balancing methods, the per-modality probe, data, models, trainer."""

from .models import AuxHeads, ConcatFusion, MultimodalNet
from .step import Stepper
from .tasks import Task, classification, regression
from .tracking import JsonlSink, MemorySink, Point

__version__ = "0.1.0"

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
