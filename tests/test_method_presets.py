"""Method presets: each baseline under its authors' own optimizer (issue 12 item 2).

The expected values are transcribed from the official repositories (file:line in
cggm_core/presets.py's docstring), independently of the preset table. Each preset resolves on any
data set, its values reach the actual torch optimizers' param_groups and the lr schedule, it is
refused for another method (joint and unimodal excepted), and explicit settings win.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
import torch

from cggm_core import presets
from cggm_core.config import catalog, format_catalog, resolve
from cggm_core.methods import METHODS
from cggm_core.schedules import StepDecay
from cggm_core.settings import SettingError
from cggm_core.tracking import MemorySink
from cggm_core.trainer import Trainer


def sgd(lr: float, wd: float, batch: int, epochs: int, step: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "optimizer": "sgd",
        "momentum": 0.9,
        "lr": lr,
        "weight_decay": wd,
        "batch_size": batch,
        "epochs": epochs,
        "clip": 0.0,
        # the aux heads train as the model's own heads do in the official codes
        "aux_optimizer": "same",
        "aux_lr_ratio": 1.0,
        "aux_weight_decay": wd,
    }
    out.update({"scheduler": "step", "lr_step_epochs": step, "lr_step_gamma": 0.1} if step else {"scheduler": "none"})
    return out


# method → (trainer values, method values), from the official code.
OFFICIAL: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # OGM-GE main.py: SGD 1e-3 m .9 wd 1e-4, StepLR(70, .1), batch 64, 100 epochs; window 0-50 from 0.
    "ogm_ge": (
        sgd(1e-3, 1e-4, 64, 100, 70),
        {"ogm_alpha": 0.8, "ge_noise": True, "ogm_modulation_starts": 1, "ogm_modulation_ends": 51},
    ),
    # AGM: SGD m .9 wd 1e-4, StepLR(70, .1); README: batch 64, 100 epochs, lr 1e-4, α 2.5; window 0-20 from 1.
    "agm": (
        sgd(1e-4, 1e-4, 64, 100, 70),
        {"agm_alpha": 2.5, "agm_modulation_starts": 1, "agm_modulation_ends": 20, "agm_clip": 1.0},
    ),
    # MMPareto.py: SGD 2e-3 m .9 wd 1e-4, its StepLR never stepped, batch 64, 50 epochs; γ 1.5.
    "mmpareto": (sgd(2e-3, 1e-4, 64, 50, None), {"pareto_gamma": 1.5}),
    "uniform": (sgd(2e-3, 1e-4, 64, 50, None), {"uniform_weight": 1.0}),
    # PMR bash.sh:140: lr 1e-3, 130 epochs, window 0-70, α 2, momentum_coef 0; SGD m .9 wd 1e-4, StepLR(70, .1).
    "pmr": (sgd(1e-3, 1e-4, 64, 130, 70), {"pmr_alpha": 2.0, "pmr_momentum": 0.0, "pmr_starts": 0, "pmr_ends": 70}),
    # MLA main.py: SGD 1e-3 m .9 wd 1e-4, StepLR(70, .1), batch 64, 100 epochs.
    "mla": (sgd(1e-3, 1e-4, 64, 100, 70), {}),
    # VMZ train_net.py defaults: lr 0.003, wd 0.005, step every 10 epochs × 0.1, batch 32, 50 epochs.
    "gblending": (sgd(3e-3, 5e-3, 32, 50, 10), {}),
    # CGGM MOSI/IEMOCAP: Adam 1e-3, aux 5e-4, clip 0.8, plateau(10, .1), batch 64, 30 epochs; ρ 1.3, λ 0.2.
    "cggm": (
        {
            "optimizer": "adam",
            "lr": 1e-3,
            "aux_lr_ratio": 0.5,
            "weight_decay": 0.0,
            "batch_size": 64,
            "epochs": 30,
            "clip": 0.8,
            "scheduler": "plateau",
            "plateau_patience": 10,
            "plateau_factor": 0.1,
        },
        {"rho": 1.3, "lam": 0.2},
    ),
}
NO_RECIPE = {"joint", "unimodal", "mslr"}

TINY: dict[str, Any] = {
    "dataset": "synthetic",
    "train_size": 64,
    "val_size": 32,
    "test_size": 32,
    "linear_probe": False,
    "shapley": False,
}


def test_every_method_has_a_preset_or_is_known_to_have_none() -> None:
    """A new method must decide: its authors' recipe, or a line saying why there is none."""
    assert set(METHODS) == set(OFFICIAL) | NO_RECIPE
    for method in NO_RECIPE:
        assert presets.official_preset(method) is None
    for method in OFFICIAL:
        name = presets.official_preset(method)
        assert name == f"{method}-official" and presets.PRESETS[name].method == method


@pytest.mark.parametrize("method", sorted(OFFICIAL))
def test_a_method_preset_resolves_on_any_dataset_with_the_official_values(method: str) -> None:
    trainer_values, method_values = OFFICIAL[method]
    name = presets.official_preset(method)
    for data in (TINY, {"dataset": "mfeat", "views": "kar,mor"}):
        job = resolve({**data, "method": method, "preset": name})
        t = asdict(job.trainer)
        assert {k: t[k] for k in trainer_values} == trainer_values
        assert {k: job.method_settings[k] for k in method_values} == method_values
        assert job.preset == name and job.flat()["preset"] == name


@pytest.mark.parametrize("method", sorted(OFFICIAL))
def test_the_values_reach_the_torch_optimizers_and_the_schedule(method: str) -> None:
    trainer_values, _ = OFFICIAL[method]
    job = resolve({**TINY, "method": method, "preset": presets.official_preset(method), "epochs": 1})
    trainer = Trainer(job, device="cpu", progress=False)
    trainer.setup()
    opt, aux_opt = trainer.stepper.optimizer, trainer.stepper.aux_optimizer
    assert aux_opt is not None
    kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[trainer_values["optimizer"]]
    assert type(opt) is kind and type(aux_opt) is kind
    aux_lr = trainer_values["lr"] * trainer_values["aux_lr_ratio"]
    for group in opt.param_groups:
        assert group["lr"] == pytest.approx(trainer_values["lr"])
        assert group["weight_decay"] == trainer_values["weight_decay"]
    for group in aux_opt.param_groups:
        assert group["lr"] == pytest.approx(aux_lr)
        assert group["weight_decay"] == trainer_values.get("aux_weight_decay", 0.0)
    if kind is torch.optim.SGD:
        assert all(g["momentum"] == 0.9 and not g["nesterov"] for g in opt.param_groups + aux_opt.param_groups)
    assert trainer.stepper.clip == trainer_values["clip"]
    if trainer_values["scheduler"] == "step":
        assert isinstance(trainer.schedule, StepDecay)
        inner = trainer.schedule.inner
        assert (inner.step_size, inner.gamma) == (trainer_values["lr_step_epochs"], 0.1)
        assert inner.optimizer is opt  # the model's optimizer; the aux heads keep a fixed lr
    else:
        assert trainer.schedule.name == trainer_values["scheduler"]


def test_the_step_schedule_cuts_the_logged_lr_every_k_epochs() -> None:
    """ogm_ge-official with its step shortened to 2 epochs: epochs 1-2 at 1e-3, 3-4 at 1e-4, 5 at 1e-5."""
    sink = MemorySink()
    job = resolve(
        {**TINY, "method": "ogm_ge", "preset": "ogm_ge-official", "epochs": 5, "lr_step_epochs": 2, "batch_size": 32}
    )
    trainer = Trainer(job, device="cpu", progress=False, sink=sink)
    trainer.setup()
    trainer.fit()
    lrs = [v for _, v in sink.series("lr")]
    assert len(lrs) == 5 * 2  # 64 samples, batch 32: two steps an epoch, each logged
    expected = [1e-3] * 4 + [1e-4] * 4 + [1e-5] * 2
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert trainer.stepper.aux_optimizer is not None
    assert trainer.stepper.aux_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # aux lr stays fixed


@pytest.mark.parametrize(
    ("preset", "method", "message"),
    [
        (
            "ogm_ge-official",
            "agm",
            "preset 'ogm_ge-official' is method 'ogm_ge''s official recipe, not 'agm''s "
            "(besides 'ogm_ge' it serves joint, unimodal); dataset 'synthetic' has no data-set preset; "
            "method 'agm''s own recipe is 'agm-official'",
        ),
        ("agm-official", "cggm", "not 'cggm''s"),
        ("mla-official", "mslr", "not 'mslr''s (besides 'mla' it serves joint, unimodal); dataset 'synthetic'"),
    ],
)
def test_a_method_preset_is_refused_for_another_method(preset: str, method: str, message: str) -> None:
    with pytest.raises(SettingError) as e:
        resolve({**TINY, "method": method, "preset": preset})
    assert message in str(e.value)


@pytest.mark.parametrize("method", ["joint", "unimodal"])
def test_the_baselines_compared_against_take_only_the_trainer_recipe(method: str) -> None:
    """`joint` under OGM-GE's optimizer is OGM-GE's paired comparison: SGD etc., no OGM-GE values."""
    extra = {"modality": "m0"} if method == "unimodal" else {}
    job = resolve({**TINY, "method": method, "preset": "ogm_ge-official", **extra})
    trainer_values, _ = OFFICIAL["ogm_ge"]
    t = asdict(job.trainer)
    assert {k: t[k] for k in trainer_values} == trainer_values
    assert not any(k.startswith("ogm") for k in job.method_settings)


def test_explicit_settings_win_over_a_method_preset() -> None:
    job = resolve(
        {
            **TINY,
            "method": "ogm_ge",
            "preset": "ogm_ge-official",
            "lr": 0.05,
            "epochs": "3",  # as `--set epochs=3` gives it
            "ogm_alpha": 0.1,
            "scheduler": "none",
        }
    )
    t = job.trainer
    assert (t.lr, t.epochs, t.scheduler) == (0.05, 3, "none")
    assert job.method_settings["ogm_alpha"] == 0.1 and job.method_settings["ogm_modulation_ends"] == 51
    assert (t.optimizer, t.weight_decay, t.clip, t.batch_size) == ("sgd", 1e-4, 0.0, 64)  # the rest: the preset's
    trainer = Trainer(job, device="cpu", progress=False)
    trainer.setup()
    assert trainer.stepper.optimizer.param_groups[0]["lr"] == 0.05
    assert trainer.stepper.aux_optimizer is not None
    assert trainer.stepper.aux_optimizer.param_groups[0]["lr"] == 0.05  # aux_lr_ratio 1 of the explicit lr


def test_a_method_preset_sets_values_only_for_its_own_method() -> None:
    with pytest.raises(RuntimeError, match="preset 'x' is method 'agm''s recipe but sets values for \\['cggm'\\]"):
        presets.Preset("x", "", (), {}, {"cggm": {"rho": 1.0}}, method="agm")


def test_the_catalog_says_which_method_and_datasets_a_preset_serves() -> None:
    entries = {p["name"]: p for p in catalog()["presets"]}
    assert entries["ogm_ge-official"]["method"] == "ogm_ge" and entries["ogm_ge-official"]["datasets"] == []
    assert entries["mosi"]["method"] is None and entries["mosi"]["datasets"] == ["mosi"]
    assert entries["agm-official"]["methods"] == {"agm": OFFICIAL["agm"][1] | {"agm_max_exponent": 10.0}}
    listing = format_catalog()
    assert "  pmr-official: for method pmr (and joint, unimodal), any dataset: PMR's authors' SGD run" in listing


def test_a_resumed_step_schedule_continues_where_it_was() -> None:
    """Epoch e (1-based) trains at lr·γ^⌊(e−1)/k⌋; a schedule rebuilt from state_dict goes on from there."""

    def fresh() -> tuple[torch.optim.Optimizer, StepDecay]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, StepDecay(opt, step_epochs=2, gamma=0.5)

    opt, schedule = fresh()
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        schedule.after_epoch(val_loss=0.0)
    assert lrs == [1.0, 1.0, 0.5]
    opt2, resumed = fresh()
    resumed.load_state_dict(schedule.state_dict())
    opt2.load_state_dict(opt.state_dict())
    rest = []
    for _ in range(3):
        rest.append(opt2.param_groups[0]["lr"])
        resumed.after_epoch(val_loss=0.0)
    assert rest == [0.5, 0.25, 0.25]  # epochs 4, 5, 6
    with pytest.raises(ValueError, match="checkpoint holds a 'plateau' schedule, this run uses 'step'"):
        resumed.load_state_dict({"name": "plateau"})
