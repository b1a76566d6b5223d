"""Job configuration: one flat object (`dataset`, `method`, any setting by its name), validated.

Setting names are unique across the chosen dataset, the chosen method and the trainer, so a job
is written without prefixes: {"dataset": "mfeat", "method": "cggm", "views": "kar,mor",
"rho": 1.3, "epochs": 20, "seed": 0}. The catalog (datasets, methods, trainer settings with
types, defaults and bounds) is generated from the registries for the CLI and the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from . import keys
from .data import DATASETS
from .methods import METHODS
from .settings import Setting, SettingError
from .tasks import SIGN_ZERO

TRAINER_SETTINGS: list[Setting] = [
    Setting("epochs", "int", 10, "training epochs", min=1, max=100_000),
    Setting("seed", "int", 0, "seed for initialisation, shuffling and noise", min=0, max=2**31 - 1),
    Setting("data_seed", "int", 0, "seed for generating or splitting the data", min=0, max=2**31 - 1),
    Setting("batch_size", "int", 64, "mini-batch size", min=1, max=65_536),
    Setting("lr", "float", 1e-3, "learning rate of the model", min=1e-7, max=10.0),
    Setting("optimizer", "str", "adam", "optimizer of the model", choices=("adam", "adamw", "sgd")),
    Setting("weight_decay", "float", 0.0, "weight decay", min=0.0, max=1.0),
    Setting(
        "aux_lr_ratio", "float", 0.5, "aux-head learning rate as a fraction of lr (official: 0.5)", min=0.0, max=10.0
    ),
    Setting("clip", "float", 0.8, "gradient-norm clip of the model (0 = off; official: 0.8)", min=0.0, max=1e6),
    Setting("hidden", "int", 64, "encoder MLP width", min=1, max=8192),
    Setting("feat_dim", "int", 32, "encoder output width (per modality)", min=1, max=8192),
    Setting("head_hidden", "int", 64, "task-head hidden width (= aux heads' last-layer input)", min=1, max=8192),
    Setting("log_every", "int", 1, "log the per-step probe every K steps", min=1, max=1_000_000),
    Setting("shapley", "bool", True, "compute Shapley contributions val/contrib/<m> each epoch"),
    Setting(
        "shapley_max_modalities", "int", 6, "skip Shapley above this many modalities (2^M evaluations)", min=1, max=12
    ),
    Setting("linear_probe", "bool", True, "train a linear probe on each frozen encoder at the end"),
    Setting("probe_steps", "int", 300, "full-batch steps of each linear probe", min=1, max=100_000),
    Setting(
        "sign_zero",
        "str",
        "negative",
        "regression sign accuracy: the sign a zero counts as (official: negative)",
        choices=SIGN_ZERO,
    ),
]
# Folded in forms ("advanced" in the catalog): rarely changed.
_ADVANCED = {"data_seed", "weight_decay", "aux_lr_ratio", "clip", "hidden", "feat_dim", "head_hidden", "log_every"}
_ADVANCED |= {"shapley_max_modalities", "probe_steps"}
TRAINER_SETTINGS = [
    replace(s, extra={**s.extra, "advanced": True}) if s.name in _ADVANCED else s for s in TRAINER_SETTINGS
]
TRAINER_BY_NAME = {s.name: s for s in TRAINER_SETTINGS}


@dataclass(frozen=True)
class JobConfig:
    dataset: str
    method: str
    data: dict[str, Any]
    method_settings: dict[str, Any]
    trainer: dict[str, Any]

    def flat(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "method": self.method, **self.data, **self.method_settings, **self.trainer}


def _check_unique() -> None:
    trainer = set(TRAINER_BY_NAME)
    for d in DATASETS.values():
        for m in METHODS.values():
            names = [s.name for s in d.settings] + [s.name for s in m.settings] + list(trainer)
            dup = {n for n in names if names.count(n) > 1}
            if dup or {"dataset", "method"} & set(names):
                raise RuntimeError(f"setting names clash between {d.name}, {m.name} and the trainer: {sorted(dup)}")


_check_unique()


def resolve(raw: Mapping[str, Any], max_data_bytes: int | None = None) -> JobConfig:
    """Validate a flat job config and fill defaults; raises SettingError naming what is allowed.

    Method settings that depend on the data (unimodal's `modality`) are checked against the
    dataset's modality names when the config alone tells them. With `max_data_bytes`, a job whose
    data would need more memory than that (the dataset's own estimate) is refused with the estimate.
    """
    if "dataset" not in raw:
        raise SettingError(f"missing 'dataset'; allowed: {', '.join(DATASETS)}")
    if "method" not in raw:
        raise SettingError(f"missing 'method'; allowed: {', '.join(METHODS)}")
    ds_name, m_name = raw["dataset"], raw["method"]
    for field, value, registry in (("dataset", ds_name, DATASETS), ("method", m_name, METHODS)):
        if not isinstance(value, str):
            raise SettingError(
                f"'{field}' must be a name (a string), got {type(value).__name__}; allowed: {', '.join(registry)}"
            )
    if ds_name not in DATASETS:
        raise SettingError(f"unknown dataset {ds_name!r}; allowed: {', '.join(DATASETS)}")
    if m_name not in METHODS:
        raise SettingError(f"unknown method {m_name!r}; allowed: {', '.join(METHODS)}")
    ds, method = DATASETS[ds_name], METHODS[m_name]
    groups: list[tuple[list[Setting], dict[str, Any]]] = [
        (ds.settings, {}),
        (method.settings, {}),
        (TRAINER_SETTINGS, {}),
    ]
    owner: dict[str, tuple[Setting, dict[str, Any]]] = {}
    for settings, target in groups:
        for s in settings:
            owner[s.name] = (s, target)
            target[s.name] = s.default
    for key, value in raw.items():
        if key in ("dataset", "method"):
            continue
        if key not in owner:
            allowed = ", ".join(sorted(owner))
            raise SettingError(
                f"unknown setting {key!r} for dataset {ds_name!r} and method {m_name!r}; allowed: {allowed}"
            )
        setting, target = owner[key]
        target[key] = setting.parse(value)
    data_cfg, method_cfg, trainer_cfg = (g[1] for g in groups)
    ds.check(data_cfg)
    method.check(method_cfg, ds.modality_names(data_cfg))
    if max_data_bytes is not None:
        need = ds.estimate_bytes(data_cfg)
        if need is not None and need > max_data_bytes:
            raise SettingError(
                f"dataset {ds_name!r} with these settings needs about {_gib(need)} of memory to load, above "
                f"the limit of {_gib(max_data_bytes)} (CGGM_MAX_JOB_DATA_BYTES on the server); "
                "make it smaller (train_size, dim, modalities, ...)"
            )
    return JobConfig(ds_name, m_name, data_cfg, method_cfg, trainer_cfg)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def catalog() -> dict[str, Any]:
    """Datasets, methods and trainer settings with types, defaults and bounds (JSON-ready)."""
    return {
        "datasets": [
            {"name": d.name, "help": d.help, "settings": [s.to_json() for s in d.settings]} for d in DATASETS.values()
        ],
        "methods": [
            {"name": m.name, "help": m.help, "settings": [s.to_json() for s in m.settings]} for m in METHODS.values()
        ],
        "trainer": [s.to_json() for s in TRAINER_SETTINGS],
        "keys": keys.catalog(),  # metric key families: the dashboard's panels
    }


def format_catalog() -> str:
    """Human-readable catalog for `cggm train --list`."""
    lines: list[str] = []

    def block(title: str, settings: list[Setting]) -> None:
        lines.append(title)
        for s in settings:
            lines.append(f"    {s.name:<24} {s.type:<6} default {s.default!r:<16} {s.describe_allowed()}  — {s.help}")

    lines.append("datasets:")
    for d in DATASETS.values():
        block(f"  {d.name}: {d.help}", d.settings)
    lines.append("methods:")
    for m in METHODS.values():
        block(f"  {m.name}: {m.help}", m.settings)
    block("trainer:", TRAINER_SETTINGS)
    return "\n".join(lines)
