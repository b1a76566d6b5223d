"""Mixed precision and compilation of one training step: what `precision` and `compile` change.

    amp = Precision("bf16", device)
    with amp.autocast():                  # forward, losses, the method's extra forward work
        loss = ...
    amp.backward(loss)                    # fp16: the loss × the scaler's scale
    amp.unscale_(optimizer, aux_optimizer)  # before anything reads or scales a gradient
    ... probe grad norms, method.modulate, clip ...
    amp.step(optimizer); amp.step(aux_optimizer); amp.update()

* `fp32`: every call above is the identity (a disabled `GradScaler`, a disabled autocast): the
  step is exactly the step without this module.
* `bf16`: `torch.autocast(device_type, dtype=torch.bfloat16)`; bfloat16 has float32's exponent
  range, so gradients neither underflow nor overflow and no scaler is needed (as in torch's own
  AMP recipe).
* `fp16`: autocast float16 and a `torch.amp.GradScaler`. The Stepper unscales the gradients right
  after each backward, **before** the probe reads `grad_norm/<m>`, before the method reads or scales
  them (CGGM's ρ·B_m, OGM-GE's k and noise, MMPareto's combination, AGM's conditional clip, MLA's
  projection) and before the clip, so every method and the clip see the true gradients.

Checked here (torch 2.13, CPU build): CPU autocast runs float16 (linear layers return float16) and
`GradScaler("cpu")` scales and unscales, so fp16 is supported on the CPU too, which lets the tests
drive a real scaler; it is not refused, but it is slow there (the segnet's step measured 18x
fp32's: float16 convolutions are emulated), so choosing it on the CPU logs a warning saying so,
and bf16 is the CPU's reduced precision (0.78-0.92x fp32's step time, BENCHMARKS.md §1.1). `Precision` checks at start that autocast really produces the dtype asked for
(older torch silently disables CPU float16 autocast with a warning) and refuses with a clear error
otherwise.

**A step the scaler skips** (inf/NaN in the scaled gradients: the scale was too large) is a step
without a parameter update for the optimizer whose gradients overflowed; `update()` halves the scale.
Method state is left as the step made it, on purpose: no method keeps state derived from gradients
(CGGM's ε history, AGM's score mean, MLA's projector, PMR's prototypes, G-Blending's weights all
come from the forward pass, which the scale does not touch), so a skip cannot poison it. The
gradient norms logged on a skipped step are the overflowed ones (inf), as they were; `amp/grad_scale`
shows the halving. Gradients a method takes itself with `torch.autograd.grad` (CGGM's g_Ω and g_m,
MMPareto's g_uni, the probe's cosines) never pass through the scaler: under fp16 they may underflow
where they are tiny (a cosine of a zero vector is 0); bf16 has no such risk.

Aux heads run under autocast with the rest of the forward (their ε is an argmax or a sign, which
the rounding barely moves, and a float32 head would cost a cast of every feature map). The
per-step probe (gradient norms, cosines) runs outside autocast: it only reads gradients, which are
float32 like the weights they belong to. Evaluation
(validation, test, Shapley contributions) and the linear probe run in float32: they measure the
trained weights, not the rounding of a reduced-precision forward.

Multi-pass methods (MLA: one backward and optimizer step per modality) call `update()` after each
pass, since a scaler can unscale an optimizer only once between updates; the aux heads, whose
losses ride on the first backward, are unscaled and stepped in that first pass.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch
else:  # the backend imports PRECISIONS (the catalog) and never trains: no torch at import
    from ._lazy import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPE_NAMES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
T = TypeVar("T")
log = logging.getLogger("cggm_core.amp")


class PrecisionError(ValueError):
    """A precision this device or torch build cannot run (the message says what can)."""


class Precision:
    """Autocast and gradient scaling of the Stepper's step, for one device type."""

    def __init__(self, name: str, device: torch.device | str, init_scale: float = 2.0**16) -> None:
        if name not in _DTYPE_NAMES:
            raise PrecisionError(f"unknown precision {name!r}; allowed: {', '.join(PRECISIONS)}")
        self.name = name
        self.device_type = torch.device(device).type
        dtype_name = _DTYPE_NAMES[name]
        self.dtype: torch.dtype | None = None if dtype_name is None else getattr(torch, dtype_name)
        if self.dtype is not None:
            _check_autocast(self.device_type, self.dtype, name)
        try:
            self.scaler = torch.amp.GradScaler(self.device_type, init_scale=init_scale, enabled=name == "fp16")
        except (RuntimeError, ValueError, TypeError) as e:  # a device type torch has no scaler for
            raise PrecisionError(
                f"precision fp16 needs a gradient scaler, which torch {torch.__version__} has not for "
                f"{self.device_type!r} ({e}); use bf16 or fp32"
            ) from e
        if name == "fp16" and self.device_type == "cpu":
            log.warning(
                "precision fp16 on the CPU runs, but measured 18x slower than fp32 (the segnet, BENCHMARKS.md "
                "§1.1: float16 kernels are emulated); bf16 is the CPU's reduced precision"
            )

    @property
    def scaling(self) -> bool:
        return self.scaler.is_enabled()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def each(self, items: Iterator[T]) -> Iterator[T]:
        """`items` with each `next()` under autocast: a method's `passes` generator runs forward
        work between its yields (MLA's unimodal pass, G-Blending's unimodal losses), while the
        backward that follows each yield stays outside autocast (torch: backward under autocast is
        not recommended; its ops already run in the dtypes their forward chose)."""
        while True:
            with self.autocast():
                item = next(items, _END)
            if item is _END:
                return
            yield item

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()  # the identity when the scaler is disabled

    def unscale_(self, *optimizers: torch.optim.Optimizer) -> None:
        """Divide the optimizers' gradients by the scale in place (and note any inf/NaN); a no-op
        without a scaler. Call it once per optimizer between `update()`s, before the gradients are read."""
        if self.scaling:
            for opt in optimizers:
                self.scaler.unscale_(opt)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(), skipped by the scaler when that optimizer's gradients held inf/NaN.
        Fused Adam takes the skip flag on the device (no sync); other optimizers cost one sync."""
        if self.scaling:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def update(self) -> None:
        if self.scaling:
            self.scaler.update()

    def grad_scale(self) -> torch.Tensor | None:
        """The scale as a 0-d tensor on the device (no sync), for logging; None without a scaler."""
        if not self.scaling:
            return None
        return self.scaler._scale  # get_scale() would sync; there is no public async getter

    def state_dict(self) -> dict[str, Any]:
        return dict(self.scaler.state_dict()) if self.scaling else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaling and state:
            self.scaler.load_state_dict(state)


_END: Any = object()


def _check_autocast(device_type: str, dtype: torch.dtype, name: str) -> None:
    """Refuse a precision whose autocast this torch build does not apply on this device type.

    Some builds accept the context and silently disable it (torch < 2.4 on the CPU for float16,
    with a warning): measured here with one tiny matmul, so a run never trains fp32 under an fp16 label.
    """
    if not torch.amp.is_autocast_available(device_type):
        raise PrecisionError(f"precision {name}: torch has no autocast for device {device_type!r}; use fp32")
    import warnings

    a = torch.ones(2, 2, device=device_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.autocast(device_type, dtype=dtype):
            got = (a @ a).dtype
    if got != dtype:
        raise PrecisionError(
            f"precision {name}: torch {torch.__version__} does not autocast to {dtype} on {device_type!r} "
            f"(a matmul under autocast gave {got}); use " + ("bf16 or fp32" if name == "fp16" else "fp32")
        )


# -- compile ------------------------------------------------------------------------------------


def compile_unsupported(device: torch.device | str) -> str | None:
    """Why `torch.compile` cannot run here (None: it can): no TorchDynamo for this Python, or no C++
    compiler for Inductor's CPU kernels. A later failure inside compilation is caught by
    `compile_encoders` falling back to eager for that frame (TorchDynamo's `suppress_errors`)."""
    try:
        import torch._dynamo as dynamo
    except Exception as e:  # an import failure of torch's own compiler stack  # pragma: no cover
        return f"torch._dynamo does not import ({type(e).__name__}: {e})"
    if not dynamo.is_dynamo_supported():
        return f"torch.compile is not supported on this Python by torch {torch.__version__}"
    if torch.device(device).type == "cpu":
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx[-1] if isinstance(inductor_config.cpp.cxx, tuple) else inductor_config.cpp.cxx
        if not any(shutil.which(c) for c in ([cxx] if cxx else []) + ["g++", "c++", "clang++"]):
            return "torch.compile's CPU backend needs a C++ compiler (g++ or clang++), none is on PATH"
    return None


def compile_encoders(model: torch.nn.Module, device: torch.device | str) -> str:
    """Compile each encoder of a MultimodalNet in place; returns what was done, for the run's summary.

    Only the encoders (where the FLOPs are) are compiled, in place (`nn.Module.compile`: the
    state_dict keys stay the same, so checkpoints load either way). The fusion and the task head
    stay eager: CGGM builds ∂L_task/∂W_Ω with create_graph=True and back-propagates through it,
    and torch.compile's autograd does not support double backward. Where compile cannot run, the
    run goes on eagerly and the reason is logged and returned ("not compiled: ...").
    """
    reason = compile_unsupported(device)
    if reason is not None:
        log.warning("compile=true but %s; training eagerly", reason)
        return f"not compiled: {reason}"
    import torch._dynamo as dynamo

    # A graph TorchDynamo or Inductor fails on runs eagerly, with the error logged, instead of
    # failing the run (the frame falls back; the rest stays compiled).
    dynamo.config.suppress_errors = True
    encoders = getattr(model, "encoders", None)
    if not isinstance(encoders, torch.nn.ModuleDict):
        raise TypeError(f"compile: expected a MultimodalNet with .encoders, got {type(model).__name__}")
    for enc in encoders.values():
        enc.compile()
    return f"compiled encoders: {', '.join(encoders)}"
