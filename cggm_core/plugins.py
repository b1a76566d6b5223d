"""Plugins: users' own datasets and models, found through Python entry points.

A package that declares, in its pyproject.toml,

    [project.entry-points."cggm_monitor.datasets"]
    toy_rings = "cggm_plugin_example.rings:ToyRings"          # a cggm_core.data.base.Dataset subclass

    [project.entry-points."cggm_monitor.models"]
    gated_mlp = "cggm_plugin_example.gated:GatedMLP"          # a cggm_core.models.registry.ModelSpec subclass

adds its classes to DATASETS / MODELS when the registries are imported (`load_into`, called by
cggm_core/data/__init__.py and cggm_core/models/__init__.py). From there they are in
`cggm train --list`, `/api/catalog` and the New run form like the built-ins, and a worker reports
them in its capabilities, so the backend hands their jobs only to workers that have the package.

The rules a plugin follows (README, "Plugins: your own datasets and models"):

* The entry point's name is the class's `name`, which is the name jobs use (`"dataset": "toy_rings"`).
* Its module imports without torch: the backend reads the catalog from it and never trains
  (torch costs it ~250 MB and ~1.5 s of start-up). `import torch` goes inside `load` / `build`,
  or in a module those import. A plugin that imports torch anyway still loads, with a warning.
* It imports cggm_core's interfaces from `cggm_core.data.base`, `cggm_core.models.registry`,
  `cggm_core.settings` and `cggm_core.tasks`, never `cggm_core.config` (which imports the
  registries that are loading it).
* Its setting names are unique across every dataset, method, model and the trainer (a dataset
  may share a dataset setting of the same type), as for the built-ins (config._check_unique).

Nothing a plugin does stops the process that loads it. A plugin that fails to import, is not the
right kind of class, declares a bad catalog entry, takes a built-in's name or a setting name
already taken, or whose default model is not installed, is skipped with one warning naming its
entry point and package; the problem is also listed in the catalog (`plugins.problems`). When
names clash, the built-in wins. Two plugins that claim the same name, or the same setting, are
both skipped: which one would win depends on install order, so the same job could run different
code on two workers.

`CGGM_NO_PLUGINS=1` loads none (to rule a plugin out while debugging).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

log = logging.getLogger("cggm_core.plugins")

Kind = Literal["dataset", "model"]
GROUPS: dict[Kind, str] = {"dataset": "cggm_monitor.datasets", "model": "cggm_monitor.models"}
NO_PLUGINS_ENV = "CGGM_NO_PLUGINS"
# Names fill the runs table's String(100) columns and the dashboard's ids: one plain word.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class PluginInfo:
    """A plugin that loaded: what it provides and where from."""

    kind: Kind
    name: str
    entry_point: str  # "name = module:attribute", as declared
    package: str | None  # the distribution that declares it (None: not from an installed package)
    version: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "entry_point": self.entry_point,
            "package": self.package,
            "version": self.version,
        }


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that was skipped, and why (the warning's text)."""

    kind: Kind
    name: str
    entry_point: str
    package: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "entry_point": self.entry_point,
            "package": self.package,
            "message": self.message,
        }


# What this process loaded and skipped; filled at import of the registries.
_LOADED: dict[tuple[Kind, str], PluginInfo] = {}
_PROBLEMS: list[PluginProblem] = []
_BUILTINS: dict[Kind, frozenset[str]] = {}


class _Refused(Exception):
    """A plugin breaks a rule; the message says which and what to do."""


def load_into(
    registry: MutableMapping[str, Any],
    kind: Kind,
    base: type,
    entry_points: Iterable[metadata.EntryPoint] | None = None,
) -> list[PluginInfo]:
    """Add the plugins of `kind` to `registry` (name → class); what is in it now are the built-ins.

    `entry_points`: the ones to load instead of the installed ones (tests). Returns what loaded.
    """
    _BUILTINS.setdefault(kind, frozenset(registry))
    if entry_points is None:
        if os.environ.get(NO_PLUGINS_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
            return []
        try:
            entry_points = metadata.entry_points(group=GROUPS[kind])
        except Exception as e:  # an installed package with unreadable metadata: no plugins, not a crash
            log.warning("cggm: cannot read the installed %s plugins (%s: %s); none loaded", kind, type(e).__name__, e)
            return []
    eps = sorted(entry_points, key=lambda ep: (ep.name, _package(ep)[0] or ""))
    claimants: dict[str, list[metadata.EntryPoint]] = {}
    for ep in eps:
        claimants.setdefault(ep.name, []).append(ep)
    loaded: list[PluginInfo] = []
    for name, same in claimants.items():
        if len(same) > 1:
            packages = ", ".join(_describe(ep) for ep in same)
            for ep in same:
                _skip(
                    kind,
                    ep,
                    f"{len(same)} plugins declare a {kind} named {name!r} ({packages}); neither is loaded, since "
                    f"which one wins would depend on install order; uninstall all but one",
                )
            continue
        ep = same[0]
        if not NAME_RE.match(name):
            _skip(kind, ep, f"{name!r} is not a plain name (a letter, then letters, digits, '_' or '-'; at most 100)")
            continue
        if name in registry:
            _skip(kind, ep, f"{name!r} is the name of a built-in {kind}, which wins; rename the plugin's entry point")
            continue
        try:
            cls = _load_checked(ep, kind, base)
        except _Refused as e:
            _skip(kind, ep, str(e))
            continue
        registry[name] = cls
        package, version = _package(ep)
        info = PluginInfo(kind, name, _entry_text(ep), package, version)
        _LOADED[(kind, name)] = info
        loaded.append(info)
    return loaded


def _load_checked(ep: metadata.EntryPoint, kind: Kind, base: type) -> type:
    had_torch = "torch" in sys.modules
    try:
        obj = ep.load()
    except (Exception, SystemExit) as e:  # whatever the plugin's import raises: one line, never a crash
        raise _Refused(f"cannot be imported: {type(e).__name__}: {_first_line(e)}") from None
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise _Refused(
            f"{ep.value} is {_what(obj)}, not a subclass of {base.__module__}.{base.__qualname__}; "
            f"point the entry point at your {base.__name__} class"
        )
    name = getattr(obj, "name", None)
    if name != ep.name:
        raise _Refused(
            f"the class's name is {name!r}, not the entry point's name {ep.name!r}; they must be the same (jobs use it)"
        )
    try:
        _check_entry(obj, kind)
    except _Refused:
        raise
    except Exception as e:  # describe() or another classmethod of the plugin raised
        raise _Refused(f"its catalog entry cannot be made: {type(e).__name__}: {_first_line(e)}") from None
    if not had_torch and "torch" in sys.modules:
        log.warning(
            "cggm: %s plugin %s imported torch when the catalog loaded it; it works, but the backend now holds "
            "torch (~250 MB) and a backend without torch cannot load it: import torch inside load()/build() "
            "(README, 'Plugins')",
            kind,
            _describe(ep),
        )
    return obj


def _check_entry(cls: Any, kind: Kind) -> None:
    """The class declares what a catalog entry needs; raises _Refused naming what is wrong."""
    from .data.base import INPUT_KINDS
    from .settings import Setting, SettingError
    from .tasks import TASKS

    if not isinstance(getattr(cls, "help", None), str):
        raise _Refused("declares no `help` string")
    settings = getattr(cls, "settings", None)
    if not isinstance(settings, list) or not all(isinstance(s, Setting) for s in settings):
        raise _Refused("its `settings` must be a list of cggm_core.settings.Setting")
    seen: set[str] = set()
    for s in settings:
        if not NAME_RE.match(s.name):
            raise _Refused(f"setting {s.name!r} is not a plain name (a letter, then letters, digits, '_' or '-')")
        if s.name in seen:
            raise _Refused(f"declares the setting {s.name!r} twice")
        seen.add(s.name)
        try:
            if s.parse(s.default) != s.default:
                raise SettingError(f"setting {s.name!r}: its default {s.default!r} is not of its type {s.type}")
        except SettingError as e:
            raise _Refused(f"its default is not allowed by its own rules: {e}") from None
    entry = cls.describe()
    try:
        json.dumps(entry, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise _Refused(f"its catalog entry is not JSON: {e}") from None
    if kind == "dataset":
        if not isinstance(getattr(cls, "default_model", None), str):
            raise _Refused("declares no `default_model` name")
        bad_kinds = sorted(set(entry["input_kinds"]) - set(INPUT_KINDS))
        if bad_kinds:
            raise _Refused(f"input kinds {bad_kinds} are not among {', '.join(INPUT_KINDS)}")
        if entry["task"] not in TASKS:
            raise _Refused(f"task {entry['task']!r} is not one of {', '.join(TASKS)}")
    else:
        kinds = getattr(cls, "input_kinds", None)
        if not isinstance(kinds, (set, frozenset)) or not kinds or not set(kinds) <= set(INPUT_KINDS):
            raise _Refused(f"`input_kinds` must be a non-empty frozenset of {', '.join(INPUT_KINDS)}")
        tasks = getattr(cls, "tasks", None)
        if tasks is not None and not (isinstance(tasks, (set, frozenset)) and set(tasks) <= set(TASKS)):
            raise _Refused(f"`tasks` must be None (any) or a frozenset of {', '.join(TASKS)}")


def drop(registry: MutableMapping[str, Any], kind: Kind, name: str, reason: str) -> None:
    """Take a loaded plugin out again (its settings clash, its default model is missing): one warning."""
    info = _LOADED.pop((kind, name), None)
    if info is None:
        raise ValueError(f"{kind} {name!r} is not a plugin")  # built-ins are never dropped
    registry.pop(name, None)
    problem = PluginProblem(kind, name, info.entry_point, info.package, reason)
    _PROBLEMS.append(problem)
    log.warning("cggm: %s", problem_line(problem))


def _skip(kind: Kind, ep: metadata.EntryPoint, reason: str) -> None:
    problem = PluginProblem(kind, ep.name, _entry_text(ep), _package(ep)[0], reason)
    _PROBLEMS.append(problem)
    log.warning("cggm: %s", problem_line(problem))


def problem_line(p: PluginProblem) -> str:
    source = f"'{p.entry_point}'" + (f" of package {p.package}" if p.package else "")
    return f"{p.kind} plugin {p.name!r} (entry point {source} in group {GROUPS[p.kind]}) is skipped: {p.message}"


# -- what the rest of the code asks ---------------------------------------------------------------
def is_plugin(kind: Kind, name: str) -> bool:
    return (kind, name) in _LOADED


def origin(kind: Kind, name: str) -> PluginInfo | None:
    """The plugin that provides this dataset or model; None for a built-in (or an unknown name)."""
    return _LOADED.get((kind, name))


def culprit(config: Any) -> str | None:
    """The plugin a job config uses (its dataset's, else its model's), for an error that code of
    the plugin raised; None when the config uses built-ins only."""
    if not isinstance(config, dict):
        return None
    from .data import DATASETS

    dataset = DATASETS.get(config.get("dataset"))  # type: ignore[arg-type]
    names: dict[Kind, Any] = {
        "dataset": config.get("dataset"),
        "model": config.get("model") or (dataset.default_model if dataset is not None else None),
    }
    for kind, name in names.items():
        info = _LOADED.get((kind, name))
        if info is not None:
            return f"{kind} plugin {info.name!r}" + (f" (package {info.package})" if info.package else "")
    return None


def loaded() -> list[PluginInfo]:
    return list(_LOADED.values())


def problems() -> list[PluginProblem]:
    return list(_PROBLEMS)


def builtin_names(kind: Kind) -> frozenset[str]:
    """The built-in names of a registry (what a worker that reports no capabilities can run)."""
    if kind not in _BUILTINS:
        from . import data, models  # noqa: F401  (importing them records their built-ins)
    return _BUILTINS[kind]


def catalog_section() -> dict[str, Any]:
    """The catalog's `plugins` entry: what loaded (and from which package) and what was skipped."""
    return {"loaded": [p.to_json() for p in loaded()], "problems": [p.to_json() for p in problems()]}


def format_section() -> list[str]:
    """Lines for `cggm train --list`."""
    lines: list[str] = []
    if _LOADED or _PROBLEMS:
        lines.append("plugins:")
    for p in loaded():
        source = f"{p.package} {p.version}" if p.package else "no installed package"
        lines.append(f"  {p.kind} {p.name}: from {source} (entry point '{p.entry_point}')")
    for q in problems():
        lines.append(f"  skipped: {problem_line(q)}")
    return lines


# -- helpers ---------------------------------------------------------------------------------------
def _package(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.metadata["Name"], dist.version
    except Exception:  # broken metadata: the plugin still loads, its origin is unknown
        return None, None


def _entry_text(ep: metadata.EntryPoint) -> str:
    return f"{ep.name} = {ep.value}"


def _describe(ep: metadata.EntryPoint) -> str:
    package, version = _package(ep)
    return f"'{_entry_text(ep)}'" + (f" of package {package} {version}" if package else "")


def _what(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__name__}"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else "(no message)"
