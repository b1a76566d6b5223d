"""The `precision` and `compile` trainer settings (cggm_core.amp), on the CPU.

torch 2.13's CPU build runs autocast in bfloat16 and float16 and has a CPU GradScaler, so these
tests drive the real autocast and the real scaler; nothing here is a stand-in.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from cggm_core import amp as amp_module
from cggm_core.amp import Precision, PrecisionError
from cggm_core.config import TRAINER_BY_NAME, resolve
from cggm_core.methods import METHODS
from cggm_core.settings import SettingError
from cggm_core.step import Stepper
from cggm_core.tasks import classification
from cggm_core.tracking import MemorySink
from cggm_core.trainer import Trainer

from .utils import random_batch, tiny_net

NAMES = ["a", "b"]
SYNTH = {"dataset": "synthetic", "train_size": 64, "val_size": 32, "test_size": 32, "batch_size": 32}
SEQ = {
    "dataset": "synthetic_seq",
    "batch_size": 16,
    "train_size": 32,
    "val_size": 16,
    "test_size": 16,
    "lengths": "8,12",
    "widths": "3,5",
    "d_model": 8,
    "heads": 2,
    "enc_layers": 1,
    "fusion_layers": 1,
    "aux_layers": 1,
}
SEG = {
    "dataset": "synthetic_seg",
    "batch_size": 8,
    "seg_size": 16,
    "seg_depth": 4,
    "seg_train_volumes": 2,
    "seg_val_volumes": 1,
    "seg_test_volumes": 1,
    "segnet_width": 2,
    "segnet_dec_width": 4,
}
QUICK = {"epochs": 1, "log_every": 1, "probe_steps": 5, "shapley": False}


def method_extra(method: str, modality: str = "m0") -> dict[str, Any]:
    if method == "unimodal":
        return {"modality": modality}
    if method == "gblending":
        return {"gblend_super_epoch": 1, "gblend_holdout": 0.25}
    return {}


def run_with_dtype_probe(job: dict[str, Any]) -> tuple[Trainer, MemorySink, set[torch.dtype]]:
    """Train `job`; also return the dtypes the task head's last layer produced in training steps."""
    sink = MemorySink()
    trainer = Trainer(resolve(job), device="cpu", sink=sink, progress=False)
    trainer.setup()
    seen: set[torch.dtype] = set()
    last = trainer.model.head_last_layer()
    last.register_forward_hook(lambda mod, args, out: seen.add(out.dtype) if mod.training else None)
    trainer.fit()
    return trainer, sink, seen


def values(sink: MemorySink) -> dict[tuple[str, int], float]:
    return {(p.key, p.step): p.value for p in sink.points}


def assert_finite_step_values(sink: MemorySink, modalities: list[str]) -> None:
    got = values(sink)
    steps = sorted({s for (k, s) in got if k == "train/loss"})
    assert steps, "no training step was logged"
    for step in steps:
        for key in ["train/loss", *(f"coef/{m}" for m in modalities), *(f"acc/{m}" for m in modalities)]:
            v = got[(key, step)]
            assert math.isfinite(v), f"{key} at step {step} is {v}"


@pytest.mark.parametrize("method", list(METHODS))
def test_bf16_autocast_trains_every_method_on_the_cpu(method: str) -> None:
    """Every method trains under bf16 autocast: the head really computes in bfloat16 during the
    training steps (an ignored setting would leave float32) and every loss, ε and coefficient is finite."""
    trainer, sink, seen = run_with_dtype_probe(
        {**SYNTH, **QUICK, "method": method, "precision": "bf16", **method_extra(method)}
    )
    assert torch.bfloat16 in seen
    assert_finite_step_values(sink, ["m0", "m1"])
    assert trainer.sink.count > 0
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # autocast, not a cast of the weights


@pytest.mark.parametrize("job", [SEQ, SEG], ids=["transformer", "segnet"])
@pytest.mark.parametrize("method", ["joint", "cggm"])
def test_bf16_on_the_transformer_and_the_segnet(method: str, job: dict[str, Any]) -> None:
    trainer, sink, seen = run_with_dtype_probe({**job, **QUICK, "method": method, "precision": "bf16"})
    assert torch.bfloat16 in seen
    assert_finite_step_values(sink, trainer.data.modalities)
    if method == "cggm":  # B_m = (S − Δ_m)/S: Σ_m B_m = M − 1 at every step (S ≠ 0 here, or the 1e-8 guard)
        got = values(sink)
        mods = trainer.data.modalities
        for step in sorted({s for (k, s) in got if k == "train/loss"}):
            total = sum(got[(f"coef/{m}", step)] for m in mods)
            if abs(total) < 1e3:  # a step with S = 0 has |B| ~ 1e8 (DESIGN §4's hazard): the sum is rounding
                assert total == pytest.approx(len(mods) - 1, abs=1e-6), step


def test_fp32_is_the_default_and_bad_precisions_are_refused() -> None:
    assert resolve({"dataset": "synthetic", "method": "joint"}).trainer.precision == "fp32"
    assert TRAINER_BY_NAME["precision"].to_json()["choices"] == ["fp32", "bf16", "fp16"]
    with pytest.raises(SettingError, match=r"precision.*fp32, bf16, fp16"):
        resolve({"dataset": "synthetic", "method": "joint", "precision": "fp8"})
    with pytest.raises(PrecisionError, match="fp32, bf16, fp16"):
        Precision("half", "cpu")
    # A device type without autocast: a clear refusal, not a run that silently trains in fp32.
    with pytest.raises(PrecisionError, match="no autocast for device 'meta'"):
        Precision("bf16", "meta")


# -- the gradient scaler: unscaled before anything reads a gradient -------------------------------


def two_fp16_steps(
    method: str, init_scale: float, clip: float
) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    torch.manual_seed(12)
    net, aux = tiny_net(NAMES)
    with torch.no_grad():  # larger weights: a gradient norm above the clip of 0.8
        for p in net.parameters():
            p.mul_(2.0)
    settings = {"modality": "a"} if method == "unimodal" else {}
    stepper = Stepper(
        net, classification(3), method, settings, optimizer_name="sgd", momentum=0.0, lr=0.1, clip=clip, aux=aux
    )
    stepper.amp = Precision("fp16", "cpu", init_scale=init_scale)
    assert stepper.method is not None
    stepper.method.set_epoch(1)  # inside OGM-GE's and AGM's modulation windows
    torch.manual_seed(5)  # the same batches and noise (OGM-GE's GE) in both runs
    logs = []
    for _ in range(2):
        xs, y = random_batch(NAMES, 32, 3)
        logs.append(stepper.step(xs, y))
    return logs, {n: p.detach().clone() for n, p in net.named_parameters()}


GRAD_READERS = [m for m in METHODS if m not in ("gblending", "pmr")]  # those two need the trainer's epoch hook


@pytest.mark.parametrize("clip", [0.0, 0.8], ids=["no-clip", "clip"])
@pytest.mark.parametrize("method", GRAD_READERS)
def test_gradients_are_unscaled_before_the_probe_the_method_and_the_clip(method: str, clip: float) -> None:
    """fp16 with a real GradScaler at scale 2^10 against the same fp16 steps at scale 1.

    At scale 1 the scaler is the identity, so that run is the correct fp16 step whatever the order
    of unscale, modulation and clip. A power-of-two scale is exact in floating point (no overflow
    here: gradients ~1, × 1024 ≪ 65504), so a correct scaler gives the same numbers. If the unscale
    came after the probe read `grad_norm/<m>`, after the method read or scaled the gradients
    (MMPareto mixes `.grad` with an unscaled autograd.grad; AGM's clip tests |W_Ω grad|; OGM-GE's
    noise takes the gradient's std) or after the clip (which would then clip a 1024× gradient to 0.8
    and leave it at 0.8/1024), these values would be off by up to 1024×.
    """
    scaled_logs, scaled_params = two_fp16_steps(method, 2.0**10, clip)
    plain_logs, plain_params = two_fp16_steps(method, 1.0, clip)
    assert scaled_logs[-1]["amp/grad_scale"] == 2.0**10 and plain_logs[-1]["amp/grad_scale"] == 1.0
    for scaled, plain in zip(scaled_logs, plain_logs, strict=True):
        for key, want in plain.items():
            if key.startswith(("grad_norm", "coef/", "acc/", "pareto/", "agm/", "ogm/", "cos/", "mla/")):
                assert scaled[key] == pytest.approx(want, rel=1e-3, abs=1e-6), key
    for n, want in plain_params.items():
        assert_close(scaled_params[n], want, rtol=1e-3, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")


def test_clip_sees_the_unscaled_gradient() -> None:
    """SGD(lr=1) after a clip at 0.8 moves the model by exactly 0.8 (as in fp32) when the clip
    reads unscaled gradients; a clip before the unscale would move it 0.8/1024."""
    torch.manual_seed(12)
    net, aux = tiny_net(NAMES)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    xs, y = random_batch(NAMES, 32, 3)
    stepper = Stepper(
        net, classification(3), "joint", optimizer=torch.optim.SGD(net.parameters(), lr=1.0), clip=0.8, aux=aux
    )
    stepper.amp = Precision("fp16", "cpu", init_scale=2.0**10)
    before = [p.detach().clone() for p in net.parameters()]
    values = stepper.step(xs, y)
    assert values["grad_norm/a"] > 0.8  # the clip is active
    moved = torch.linalg.vector_norm(
        torch.stack([(p.detach() - b).norm() for p, b in zip(net.parameters(), before, strict=True)])
    )
    assert float(moved) == pytest.approx(0.8, rel=1e-3)


def test_a_step_the_scaler_skips_changes_no_weight_and_poisons_no_state() -> None:
    """A scale of 2^24 overflows float16 in the backward: the scaler skips the step (no weight of
    the model or the aux heads moves), halves the scale, and the run goes on. CGGM's state (ε(t−1),
    from the forward) stays finite, and once the scale has come down the steps update again."""
    torch.manual_seed(12)
    net, aux = tiny_net(NAMES)
    stepper = Stepper(net, classification(3), "cggm", {"variant": "paper"}, aux=aux)
    stepper.amp = Precision("fp16", "cpu", init_scale=2.0**24)
    method = stepper.method
    assert method is not None
    model0 = [p.detach().clone() for p in net.parameters()]
    aux0 = [p.detach().clone() for p in aux.parameters()]
    torch.manual_seed(5)
    xs, y = random_batch(NAMES, 32, 3)
    first = stepper.step(xs, y)
    assert not math.isfinite(first["grad_norm/a"])  # the overflowed gradient, logged as it was
    assert first["amp/grad_scale"] == 2.0**23
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), model0, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(aux.parameters(), aux0, strict=True))
    assert method.prev_eps is not None and torch.isfinite(method.prev_eps).all()  # type: ignore[attr-defined]
    scales = [first["amp/grad_scale"]]
    for _ in range(15):
        xs, y = random_batch(NAMES, 32, 3)
        last = stepper.step(xs, y)
        scales.append(last["amp/grad_scale"])
    assert scales == sorted(scales, reverse=True) and scales[-1] < 2.0**16  # halved on each skip, then held
    assert math.isfinite(last["grad_norm/a"]) and math.isfinite(last["coef/a"])
    assert not all(torch.equal(p, q) for p, q in zip(net.parameters(), model0, strict=True))
    assert all(torch.isfinite(p).all() for p in [*net.parameters(), *aux.parameters()])


def test_the_scaler_state_is_checkpointed_and_resumed(tmp_path: Any) -> None:
    job = resolve({**SYNTH, **QUICK, "epochs": 2, "method": "cggm", "precision": "fp16", "linear_probe": False})
    trainer = Trainer(job, out_dir=tmp_path, device="cpu", progress=False)
    trainer.setup()
    trainer.stepper.step_batch(next(iter(trainer.train_split.batches(32))))
    trainer.stepper.amp.scaler.update(2.0**7)  # a scale that no fresh scaler would have
    trainer.save_checkpoint(1)
    again = Trainer(job, out_dir=tmp_path, device="cpu", progress=False)
    again.setup(resume=tmp_path / "checkpoint.pt")
    assert again.stepper.amp.scaler.get_scale() == 2.0**7


# -- compile --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compile_runs_the_encoders_compiled_with_the_eager_numbers() -> None:
    """torch.compile works on this CPU (Inductor with g++): the encoders run compiled, and CGGM's
    double backward through the eager head still works; the losses match the eager run's."""
    job = {**SYNTH, **QUICK, "method": "cggm", "train_size": 32, "linear_probe": False}
    eager_sink, compiled_sink = MemorySink(), MemorySink()
    eager = Trainer(resolve(job), device="cpu", sink=eager_sink, progress=False)
    eager.setup()
    eager.fit()
    compiled = Trainer(resolve({**job, "compile": True}), device="cpu", sink=compiled_sink, progress=False)
    compiled.setup()
    assert compiled.compiled == "compiled encoders: m0, m1"
    assert all(enc._compiled_call_impl is not None for enc in compiled.model.encoders.values())
    result = compiled.fit()
    assert result.summary["compile"] == "compiled encoders: m0, m1"
    for key in ("train/loss", "coef/m0", "grad_norm/m1"):
        assert values(compiled_sink)[(key, 1)] == pytest.approx(values(eager_sink)[(key, 1)], rel=1e-4), key


def test_compile_where_it_cannot_run_trains_eagerly_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a C++ compiler (simulated: `shutil.which` finds none) cannot run Inductor's
    CPU kernels: the run goes on eagerly and its summary says why, instead of failing at the first step."""
    monkeypatch.setattr(amp_module.shutil, "which", lambda name: None)
    assert "C++ compiler" in (amp_module.compile_unsupported("cpu") or "")
    job = resolve({**SYNTH, **QUICK, "method": "joint", "compile": True, "linear_probe": False})
    trainer = Trainer(job, device="cpu", progress=False)
    trainer.setup()
    assert all(enc._compiled_call_impl is None for enc in trainer.model.encoders.values())
    result = trainer.fit()
    assert result.summary["compile"].startswith("not compiled: torch.compile's CPU backend needs a C++ compiler")
    assert result.status == "finished"
