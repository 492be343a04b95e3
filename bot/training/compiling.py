"""torch.compile for a training job on the CPU, when the job is long enough to pay for it, and a clean fallback when
compiling fails (bench/README.md, "Training without bf16 (issue 14)").

Compiling fuses what an eager step runs one operator at a time (a LoRA layer's two small matmuls, its scaling and
addition; layer norms, GELU, attention's reshapes) into generated C++ kernels; the large matmuls stay aten's. Only
the transformer blocks are compiled (regional compilation: the layers share one graph, so it is built once, not
once per layer), with the shape of a step's batch fixed (`dynamic=False`). A step of another shape (an epoch's
last, shorter batch) runs eagerly rather than compiling again.

The cost comes once, in the first compiled step (COMPILE_S, measured cold; a second job on the same machine finds
the graphs in inductor's cache, TORCHINDUCTOR_CACHE_DIR, and pays less). So the trainer runs its first steps
eagerly, times them, and compiles only when the steps left would save MARGIN times that cost at the measured gain
(GAIN). MIMICBOT_TRAIN_COMPILE=off never compiles, =on always does (on the CPU), =auto (the default) decides, in
fp32 on the CPU (a CPU without native bf16: what was measured; with bf16 autocast or on a GPU, not measured, the
model stays uncompiled).

If compiling fails (no C++ compiler, an operator inductor cannot lower, ...), the failure is logged and recorded,
the step runs again eagerly, and training goes on uncompiled.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the trainer; the decision itself needs none
    import torch

log = logging.getLogger(__name__)

SETTING = "MIMICBOT_TRAIN_COMPILE"  # auto | on | off
# Measured with bench/train_levers.py on the GPT-2-124M-shaped model, fp32, 4 blocks of 256 a step, 2 cores capped
# to AVX2 (bench/README.md, "Training without bf16"): the first compiled step cost 11.3 s (full) and 10.7 s (LoRA)
# more than a steady step with an empty inductor cache (6.6 s and 4.2 s in a second job), and a compiled step took
# 7.6 % less time than an eager one for a full fine-tune (167.6 against 154.9 tokens/s) and 36 % less for LoRA r8
# (218.6 against 139.6). Rounded to the cautious side:
COMPILE_S = 12.0
GAIN = {"full": 0.07, "lora": 0.35}
MARGIN = 2.0  # compile when the expected saving is at least twice the cost: the gain moves with the load
DECIDE_AFTER = 2  # eager steps before deciding; the second one's time is the step time (the first warms up)


def setting() -> str:
    value = os.environ.get(SETTING, "auto").strip().lower()
    return value if value in ("auto", "on", "off") else "auto"


def worth_compiling(device: str, precision: str, lora: bool, steps_left: int, step_s: float,
                    mode: str = "auto") -> tuple[bool, str]:
    """(compile?, why): whether `steps_left` steps of `step_s` seconds eagerly would save MARGIN x COMPILE_S.
    `device` is the torch device's type ("cpu", "cuda")."""
    if mode == "off":
        return False, f"{SETTING}=off"
    if device != "cpu":
        return False, "measured on the CPU only"
    if mode == "on":
        return True, f"{SETTING}=on"
    if precision != "fp32":
        return False, f"measured in fp32 only (this job trains in {precision})"
    saving = steps_left * step_s * GAIN["lora" if lora else "full"]
    if saving < MARGIN * COMPILE_S:
        return False, f"too short: {steps_left} steps left would save ~{saving:.0f} s for ~{COMPILE_S:.0f} s of compiling"
    return True, f"{steps_left} steps left would save ~{saving:.0f} s for ~{COMPILE_S:.0f} s of compiling"


def transformer_blocks(model) -> list[torch.nn.Module]:
    """The model's repeated blocks (GPT2Block, LlamaDecoderLayer, ...: the classes transformers names in
    `_no_split_modules`), under a peft wrapper or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    return [m for m in base.modules() if type(m).__name__ in names]


class Steps:
    """Runs the training loop's forward and backward: eagerly for the first DECIDE_AFTER steps, then compiled if
    the job is long enough (`worth_compiling`). `record` goes into training.json."""

    def __init__(self, model, device: torch.device, precision: str, lora: bool, total: int):
        self.model, self.device, self.precision, self.lora, self.total = model, device, precision, lora, total
        self.done = 0
        self.shape: torch.Size | None = None  # the batch shape the blocks are compiled for, once compiled
        self.compiled: list[tuple[torch.nn.Module, Callable]] = []
        self.record: dict = {"used": False, "reason": "not decided (the job ended first)"}

    def run(self, forward_backward: Callable, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """forward_backward(batch, labels) -> loss, compiled when decided and the batch has the compiled shape."""
        compiled = self.shape is not None and batch.shape == self.shape
        self._use(compiled)
        started = time.perf_counter()
        try:
            loss = forward_backward(batch, labels)
        except Exception as e:  # noqa: BLE001 - any compile failure: train on uncompiled
            if not compiled:
                raise
            self._give_up(e)
            compiled = False
            loss = forward_backward(batch, labels)
        seconds = time.perf_counter() - started
        self.done += 1
        if self.done == DECIDE_AFTER:
            self._decide(batch.shape, seconds)
        elif compiled and "compile_s" not in self.record:  # the first compiled step: what compiling cost
            self.record["compile_s"] = round(seconds - self.record["eager_step_s"], 1)
        return loss

    def finish(self) -> None:
        """Back to the eager blocks (the eval, the samples and the saved model see the model as it was)."""
        self._use(False)

    def _decide(self, shape: torch.Size, step_s: float) -> None:
        use, why = worth_compiling(self.device.type, self.precision, self.lora, self.total - self.done, step_s,
                                   setting())
        self.record = {"used": use, "reason": why}
        if not use:
            return
        blocks = transformer_blocks(self.model)
        if not blocks:
            self.record = {"used": False, "reason": "no transformer blocks found to compile"}
            return
        log.info("compiling the model's %d blocks for training: %s", len(blocks), why)
        import torch

        self.compiled = [(b, torch.compile(b.forward, dynamic=False)) for b in blocks]
        self.shape = shape
        self.record.update(mode="transformer blocks, dynamic=False", eager_step_s=round(step_s, 2))

    def _use(self, compiled: bool) -> None:
        for block, fn in self.compiled:
            if compiled:
                block.forward = fn
            else:
                block.__dict__.pop("forward", None)  # the class's own forward again

    def _give_up(self, e: Exception) -> None:
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        log.warning("compiling for training failed (%s); training goes on uncompiled", reason)
        self._use(False)
        self.compiled, self.shape = [], None
        self.model.zero_grad(set_to_none=True)  # whatever a failed backward left
        self.record = {"used": False, "reason": self.record["reason"], "error": reason}
