"""Job configuration: one flat object (`dataset`, `method`, `model`, `preset`, any setting by name), resolved once.

Setting names are unique across every dataset, method and model and the trainer, so a job is
written without prefixes: {"dataset": "mfeat", "method": "cggm", "views": "kar,mor", "rho": 1.3,
"epochs": 20, "seed": 0}. `resolve` validates it against the registries and returns a typed
`JobConfig` (the trainer's settings a `TrainerConfig` dataclass); everything downstream (the
trainer, the Stepper, the worker) reads that object and never parses the raw dict again. A
`preset` (cggm_core.presets: the official recipe of a paper data set) fills values between the
defaults and the job's own settings, which win. The
catalog (datasets, methods, models, tasks, trainer settings with types, defaults and bounds) is
generated from the same declarations for the CLI, the backend and the dashboard's form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from . import keys, plugins
from .data import DATASETS
from .data.base import kinds_of
from .methods import METHODS
from .models import MODELS
from .plugins import Kind
from .presets import COMPARED_AGAINST, PRESETS, Preset, official_preset
from .settings import Setting, SettingError, SettingType
from .tasks import SIGN_ZERO, TASKS

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "plateau", "warmup_cosine", "step")


def _setting(default: Any, help: str, **bounds: Any) -> Any:
    return field(default=default, metadata={"help": help, **bounds})


@dataclass(frozen=True)
class TrainerConfig:
    """The trainer's settings, typed; `TRAINER_SETTINGS` (the catalog's view) is derived from these fields."""

    epochs: int = _setting(10, "training epochs", min=1, max=100_000)
    seed: int = _setting(0, "seed for initialisation, shuffling and noise", min=0, max=2**31 - 1)
    data_seed: int = _setting(0, "seed for generating or splitting the data", min=0, max=2**31 - 1)
    batch_size: int = _setting(64, "mini-batch size", min=1, max=65_536)
    lr: float = _setting(1e-3, "learning rate of the model", min=1e-7, max=10.0)
    optimizer: str = _setting("adam", "optimizer of the model", choices=OPTIMIZERS)
    weight_decay: float = _setting(0.0, "weight decay of the model", min=0.0, max=1.0)
    momentum: float = _setting(
        0.9, "SGD momentum (the model's and the aux heads'; official BraTS: 0.9)", min=0.0, max=0.999
    )
    aux_lr_ratio: float = _setting(0.5, "aux-head learning rate as a fraction of lr (official: 0.5)", min=0.0, max=10.0)
    aux_optimizer: str = _setting(
        "same",
        "optimizer of the aux heads (same = the model's kind, as the official code)",
        choices=("same", *OPTIMIZERS),
    )
    aux_weight_decay: float = _setting(
        0.0, "weight decay of the aux heads (official: 0; Food-101 3e-3; BraTS 3e-4)", min=0.0, max=1.0
    )
    scheduler: str = _setting(
        "none",
        "lr schedule of the model (the aux heads' lr stays fixed, as the official): none; plateau (on val/loss, "
        "each epoch); warmup_cosine (each step: warmup_start_lr → lr, then cosine to final_lr); step (× lr_step_gamma "
        "every lr_step_epochs epochs)",
        choices=SCHEDULERS,
    )
    plateau_patience: int = _setting(
        10,
        "plateau: epochs without a lower val/loss it waits out before cutting the lr (official `when`: 10)",
        min=0,
        max=100_000,
    )
    plateau_factor: float = _setting(0.1, "plateau: the lr is multiplied by this (official: 0.1)", min=1e-6, max=0.999)
    warmup_epochs: int = _setting(
        10, "warmup_cosine: epochs of linear warm-up (official BraTS: 10)", min=0, max=100_000
    )
    warmup_start_lr: float = _setting(
        4e-4, "warmup_cosine: the lr of the first step (official BraTS: 4e-4)", min=0.0, max=10.0
    )
    final_lr: float = _setting(
        1e-3, "warmup_cosine: the lr the cosine ends at (official BraTS: 1e-3)", min=0.0, max=10.0
    )
    lr_step_epochs: int = _setting(
        70, "step: epochs between two lr cuts (official OGM-GE, AGM, PMR, MLA: 70)", min=1, max=100_000
    )
    lr_step_gamma: float = _setting(
        0.1, "step: the lr is multiplied by this at each cut (official: 0.1)", min=1e-6, max=1.0
    )
    clip: float = _setting(0.8, "gradient-norm clip of the model (0 = off; official: 0.8)", min=0.0, max=1e6)
    log_every: int = _setting(1, "log the per-step probe every K steps", min=1, max=1_000_000)
    shapley: bool = _setting(True, "compute Shapley contributions val/contrib/<m> each epoch")
    shapley_max_modalities: int = _setting(
        6, "skip Shapley above this many modalities (2^M evaluations)", min=1, max=12
    )
    linear_probe: bool = _setting(True, "train a linear probe on each frozen encoder at the end")
    probe_steps: int = _setting(300, "full-batch steps of each linear probe", min=1, max=100_000)
    probe_max_samples: int = _setting(
        4096, "training samples the linear probe reads at most (a seeded subset)", min=16, max=1_000_000
    )
    sign_zero: str = _setting(
        "negative", "regression sign accuracy: the sign a zero counts as (official: negative)", choices=SIGN_ZERO
    )
    num_workers: int = _setting(
        0, "DataLoader worker processes for file-backed data (0 = in the training process)", min=0, max=64
    )
    pin_memory: bool = _setting(True, "pin host memory of file-backed batches when training on CUDA")


def _trainer_settings() -> list[Setting]:
    out = []
    for f in fields(TrainerConfig):
        meta = dict(f.metadata)
        kind: SettingType = f.type  # type: ignore[assignment]  # "int", "float", "str", "bool" (postponed annotations)
        choices = meta.pop("choices", None)
        out.append(Setting(f.name, kind, f.default, meta.pop("help"), choices=choices, **meta))
        assert f.default is not MISSING
    return out


TRAINER_SETTINGS: list[Setting] = _trainer_settings()
# Folded in forms ("advanced" in the catalog): rarely changed.
_ADVANCED = {"data_seed", "weight_decay", "momentum", "aux_lr_ratio", "aux_optimizer", "aux_weight_decay", "clip"}
_ADVANCED |= {"plateau_patience", "plateau_factor", "warmup_epochs", "warmup_start_lr", "final_lr", "log_every"}
_ADVANCED |= {"lr_step_epochs", "lr_step_gamma"}
_ADVANCED |= {"shapley_max_modalities", "probe_steps", "probe_max_samples", "sign_zero", "num_workers", "pin_memory"}
TRAINER_SETTINGS = [
    replace(s, extra={**s.extra, "advanced": True}) if s.name in _ADVANCED else s for s in TRAINER_SETTINGS
]
TRAINER_BY_NAME = {s.name: s for s in TRAINER_SETTINGS}
TOP_LEVEL = ("dataset", "method", "model", "preset")


@dataclass(frozen=True)
class JobConfig:
    dataset: str
    method: str
    model: str
    data: dict[str, Any]
    method_settings: dict[str, Any]
    model_settings: dict[str, Any]
    trainer: TrainerConfig
    preset: str | None = None  # for the record: every value it gave is explicit in `flat()`

    def flat(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "method": self.method,
            "model": self.model,
            **({"preset": self.preset} if self.preset is not None else {}),
            **self.data,
            **self.method_settings,
            **self.model_settings,
            **asdict(self.trainer),
        }


@dataclass(frozen=True)
class _Owner:
    """Who declares a setting: the trainer, or a dataset, method or model (built-in or plugin)."""

    kind: str
    name: str
    setting: Setting
    plugin: bool = False

    def __str__(self) -> str:
        return "the trainer" if self.kind == "trainer" else f"{self.kind} {'plugin ' * self.plugin}{self.name}"

    def clashes_with(self, other: _Owner) -> bool:
        if (other.kind, other.name) == (self.kind, self.name):
            return False
        # A job has one dataset: two datasets may share a name when it means the same type.
        return not (self.kind == other.kind == "dataset" and self.setting.type == other.setting.type)


def _check_unique() -> None:
    """Setting names are unique across every dataset, method and model and the trainer (at import).

    Datasets may share a name of the same type (`task`, `train_size` of two synthetic datasets):
    a job has one dataset, so the name still has one meaning in every job.

    Built-ins first: a clash among them is a bug here (RuntimeError). Then the plugins
    (cggm_core.plugins), which must never stop the process that loads them: a plugin declaring a
    reserved name, or a name the trainer or a built-in has, is dropped from its registry with one
    warning naming it and the owner (the built-in wins); two plugins that clash are both dropped
    (which one would win depends on install order). Last, a plugin dataset whose default model is
    not installed is dropped.
    """
    owners: dict[str, _Owner] = {s.name: _Owner("trainer", "", s) for s in TRAINER_SETTINGS}

    def problem(me: _Owner, taken: Mapping[str, _Owner]) -> str | None:
        if me.setting.name in TOP_LEVEL:
            return f"{me} declares a setting named {me.setting.name!r}, which is reserved"
        other = taken.get(me.setting.name)
        if other is not None and me.clashes_with(other):
            return f"setting {me.setting.name!r} is declared by {other} and by {me}"
        return None

    found: list[tuple[Kind, Any]] = []
    for kind, registry in (("dataset", DATASETS), ("method", METHODS), ("model", MODELS)):
        for item in registry.values():
            if kind != "method" and plugins.is_plugin(kind, item.name):  # type: ignore[arg-type]
                found.append((kind, item))  # type: ignore[arg-type]
                continue
            for s in item.settings:
                me = _Owner(kind, item.name, s)
                bad = problem(me, owners)
                if bad:
                    raise RuntimeError(bad)
                owners.setdefault(s.name, me)
    # The plugins: against the trainer and the built-ins (which win), then against each other.
    survivors: list[tuple[Kind, Any]] = []
    for kind, item in found:
        bad = next((b for s in item.settings if (b := problem(_Owner(kind, item.name, s, True), owners))), None)
        if bad:
            plugins.drop(_registry(kind), kind, item.name, f"{bad}; the built-in wins: rename the plugin's setting")
        else:
            survivors.append((kind, item))
    among: dict[str, _Owner] = {}
    dropped: dict[tuple[Kind, str], str] = {}
    for kind, item in survivors:
        for s in item.settings:
            me = _Owner(kind, item.name, s, True)
            bad = problem(me, among)
            if bad:
                other = among[s.name]
                for key in ((kind, item.name), (other.kind, other.name)):
                    dropped.setdefault(key, bad)  # type: ignore[arg-type]
            among.setdefault(s.name, me)
    for (kind, name), bad in dropped.items():
        plugins.drop(_registry(kind), kind, name, f"{bad}; both plugins are skipped: rename it in one of them")
    for name, ds in list(DATASETS.items()):
        if plugins.is_plugin("dataset", name) and ds.default_model not in MODELS:
            reason = f"its default model {ds.default_model!r} is not installed; installed: {', '.join(MODELS)}"
            plugins.drop(DATASETS, "dataset", name, reason)


def _registry(kind: Kind) -> dict[str, Any]:
    return DATASETS if kind == "dataset" else MODELS


_check_unique()


def _check_presets() -> None:
    """Every preset value names a setting of its group and parses to itself (at import).

    A preset's data sets need not be registered (the paper's loaders may be absent from an
    install); a job can only name a registered one, so an absent one's preset is never applied.
    """
    for p in PRESETS.values():
        groups: list[tuple[str, Mapping[str, Any], list[Setting]]] = [("the trainer", p.trainer, TRAINER_SETTINGS)]
        for kind, registry, values in (("method", METHODS, p.methods), ("model", MODELS, p.models)):
            for name, vals in values.items():
                if name not in registry:
                    raise RuntimeError(f"preset {p.name!r} sets values for unknown {kind} {name!r}")
                groups.append((f"{kind} {name}", vals, registry[name].settings))
        for owner, vals, settings in groups:
            by_name = {s.name: s for s in settings}
            for key, value in vals.items():
                if key not in by_name:
                    raise RuntimeError(f"preset {p.name!r}: {owner} has no setting {key!r}")
                try:
                    parsed = by_name[key].parse(value)
                except SettingError as e:
                    raise RuntimeError(f"preset {p.name!r}: {e}") from None
                if parsed != value:
                    raise RuntimeError(f"preset {p.name!r}: {key}={value!r} is not a {by_name[key].type}")


_check_presets()


def _name(raw: Mapping[str, Any], field_name: str, registry: Mapping[str, Any], default: str | None = None) -> str:
    value = raw.get(field_name, default)
    if value is None:
        raise SettingError(f"missing '{field_name}'; allowed: {', '.join(registry)}")
    if not isinstance(value, str):
        raise SettingError(
            f"'{field_name}' must be a name (a string), got {type(value).__name__}; allowed: {', '.join(registry)}"
        )
    if value not in registry:
        raise SettingError(f"unknown {field_name} {value!r}; allowed: {', '.join(registry)}")
    return value


def resolve(raw: Mapping[str, Any], max_data_bytes: int | None = None) -> JobConfig:
    """Validate a flat job config and fill defaults; raises SettingError naming what is allowed.

    The model defaults to the dataset's own, and must read the dataset's kind of inputs and serve
    its task. Method settings that depend on the data (unimodal's `modality`) are checked against
    the dataset's modality names when the config alone tells them. With `max_data_bytes`, a job
    whose data would need more memory than that (the dataset's own estimate) is refused with the
    estimate.
    """
    ds_name = _name(raw, "dataset", DATASETS)
    m_name = _name(raw, "method", METHODS)
    ds, method = DATASETS[ds_name], METHODS[m_name]
    model_name = _name(raw, "model", MODELS, default=ds.default_model) if raw.get("model") else ds.default_model
    model = MODELS[model_name]
    preset = _preset(raw, ds_name, m_name)
    groups: list[tuple[list[Setting], dict[str, Any]]] = [
        (ds.settings, {}),
        (method.settings, {}),
        (model.settings, {}),
        (TRAINER_SETTINGS, {}),
    ]
    owner: dict[str, tuple[Setting, dict[str, Any]]] = {}
    for settings, target in groups:
        for s in settings:
            owner[s.name] = (s, target)
            target[s.name] = s.default
    if preset is not None:  # checked at import (_check_presets): every value parses
        for key, value in preset.values_for(m_name, model_name).items():
            _, target = owner[key]
            target[key] = value
    for key, value in raw.items():
        if key in TOP_LEVEL:
            continue
        if key not in owner:
            allowed = ", ".join(sorted(owner))
            raise SettingError(
                f"unknown setting {key!r} for dataset {ds_name!r}, method {m_name!r} and model {model_name!r}; "
                f"allowed: {allowed}"
            )
        setting, target = owner[key]
        target[key] = setting.parse(value)
    data_cfg, method_cfg, model_cfg, trainer_cfg = (g[1] for g in groups)
    ds.check(data_cfg)
    modalities = ds.modality_names(data_cfg)
    method.check(method_cfg, modalities)
    task = ds.task_name(data_cfg)
    method.check_task(task, method_cfg)
    model.check(model_cfg, kinds_of(ds.input_kinds(data_cfg), modalities), task)
    if max_data_bytes is not None:
        need = ds.estimate_bytes(data_cfg)
        if need is not None and need > max_data_bytes:
            raise SettingError(
                f"dataset {ds_name!r} with these settings needs about {_gib(need)} of memory to load, above "
                f"the limit of {_gib(max_data_bytes)} (CGGM_MAX_JOB_DATA_BYTES on the server); "
                "make it smaller (train_size, dim, modalities, ...)"
            )
    return JobConfig(
        ds_name,
        m_name,
        model_name,
        data_cfg,
        method_cfg,
        model_cfg,
        TrainerConfig(**trainer_cfg),
        preset.name if preset is not None else None,
    )


def _preset(raw: Mapping[str, Any], dataset: str, method: str) -> Preset | None:
    """The job's preset (None when it names none); refused when it is not for the job's data set
    or, for a method's own recipe, not for the job's method (cggm_core/presets.py)."""
    name = raw.get("preset")
    if name is None or name == "":
        return None
    hints = [p.name for p in PRESETS.values() if p.datasets and dataset in p.datasets]
    hint = f"the preset for {dataset!r} is {hints[0]!r}" if hints else f"dataset {dataset!r} has no data-set preset"
    own = official_preset(method)
    if own is not None:
        hint += f"; method {method!r}'s own recipe is {own!r}"
    if not isinstance(name, str):
        raise SettingError(f"'preset' must be a name (a string), got {type(name).__name__}; {hint}")
    if name not in PRESETS:
        raise SettingError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)} ({hint})")
    preset = PRESETS[name]
    if not preset.for_dataset(dataset):
        raise SettingError(
            f"preset {name!r} is the official recipe for dataset {', '.join(preset.datasets)}, not {dataset!r}; {hint}"
        )
    if not preset.for_method(method):
        raise SettingError(
            f"preset {name!r} is method {preset.method!r}'s official recipe, not {method!r}'s "
            f"(besides {preset.method!r} it serves {', '.join(COMPARED_AGAINST)}); {hint}"
        )
    return preset


def _preset_scope(p: Preset) -> str:
    """'brats' or 'method ogm_ge (and joint, unimodal), any dataset' for the catalog listing."""
    if p.method is None:
        return ", ".join(p.datasets) if p.datasets else "any dataset and method"
    where = ", ".join(p.datasets) if p.datasets else "any dataset"
    return f"method {p.method} (and {', '.join(COMPARED_AGAINST)}), {where}"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def catalog() -> dict[str, Any]:
    """Datasets, methods, models, tasks and trainer settings with types, defaults and bounds (JSON-ready)."""
    return {
        "datasets": [d.describe() for d in DATASETS.values()],
        "methods": [
            {
                "name": m.name,
                "help": m.help,
                "settings": [s.to_json() for s in m.settings],
                "tasks": None if m.tasks is None else sorted(m.tasks),
            }
            for m in METHODS.values()
        ],
        "models": [m.describe() for m in MODELS.values()],
        "tasks": [t.describe() for t in TASKS.values()],
        "trainer": [s.to_json() for s in TRAINER_SETTINGS],
        "presets": [p.describe() for p in PRESETS.values()],
        "plugins": plugins.catalog_section(),
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
        block(f"  {d.name}: {d.help} (default model: {d.default_model})", d.settings)
    lines.append("methods:")
    for m in METHODS.values():
        block(f"  {m.name}: {m.help}", m.settings)
    lines.append("models:")
    for spec in MODELS.values():
        block(f"  {spec.name}: {spec.help} (reads {', '.join(sorted(spec.input_kinds))})", spec.settings)
    block("trainer:", TRAINER_SETTINGS)
    lines.append("presets (--preset NAME; explicit settings win):")
    for p in PRESETS.values():
        lines.append(f"  {p.name}: for {_preset_scope(p)}: {p.help}")
    lines.extend(plugins.format_section())
    return "\n".join(lines)
