"""Precision follows what the libraries may use, not only what the CPU has: capped to AVX2 (as the benchmarks
approximate a CPU without AVX-512), bf16 is emulated, so training and generation pick fp32."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bot.devices import capped_below_avx512


@pytest.mark.parametrize("isa", ["AVX2", "avx2_vnni", "AVX", "SSE41"])
def test_onednn_capped_below_avx512_is_seen(monkeypatch, isa):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert capped_below_avx512()


@pytest.mark.slow  # starts a process: torch reads ATEN_CPU_CAPABILITY once, when it loads
def test_aten_capped_to_avx2_trains_and_serves_in_fp32():
    code = ("import json, torch; from bot.devices import cpu_has_bf16, inference_dtype; "
            "from bot.training.trainer import pick_precision; cpu = torch.device('cpu'); "
            "print(json.dumps([torch.backends.cpu.get_cpu_capability(), cpu_has_bf16(), "
            "pick_precision('auto', cpu), str(inference_dtype(cpu))]))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1]) == ["AVX2", False, "fp32", "torch.float32"]
