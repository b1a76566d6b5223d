"""torch, imported on first use by the modules that the registries pull in.

The backend imports cggm_core's registries (the catalog, job validation) but never trains. With
torch imported at module level that cost it ~250 MB of memory and ~1.5 s of start-up
(BENCHMARKS.md §3). The dataset, method and task modules therefore reach torch through these
proxies: the real module loads at the first attribute access, i.e. when something computes.
They import the real modules under TYPE_CHECKING, so type checking sees torch as it is.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # later lookups are plain attribute hits (the hot path)
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


torch: Any = LazyModule("torch")
F: Any = LazyModule("torch.nn.functional")
nn: Any = LazyModule("torch.nn")
