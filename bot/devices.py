"""What the hardware does natively, shared by training (autocast) and generation (the cached weights' dtype)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import torch


@cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16, AMX or Arm BF16) and torch's bf16 matmul runs.
    Without native support bf16 is emulated and slower than fp32."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    native = bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}) if flags else torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if not native or capped_below_avx512():
        return False
    try:
        a = torch.ones(8, 8, dtype=torch.bfloat16)
        return bool((a @ a)[0, 0].item() == 8)
    except RuntimeError:
        return False


def capped_below_avx512() -> bool:
    """True when the libraries were told to use no more than AVX2 (ATEN_CPU_CAPABILITY=avx2,
    ONEDNN_MAX_CPU_ISA=AVX2, as on a CPU without AVX-512): bf16 is then emulated, whatever the CPU has."""
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return (torch.backends.cpu.get_cpu_capability() in ("AVX2", "NO AVX")
            or onednn == "AVX" or onednn.startswith(("AVX2", "SSE")))


def inference_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """The dtype to serve a model in: bf16 where the hardware computes it natively (half the memory, and
    decoding reads every weight once a token), else fp16 on older GPUs, fp32 on other CPUs."""
    if requested != "auto":
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32
