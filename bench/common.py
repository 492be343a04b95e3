"""Shared pieces of the benchmarks: the 124M-shaped model, the data, the machine's matmul peak, results.

Nothing here is product code: the benchmarks measure bot/ from the outside, against baselines written
from the facts of the huggingtweets recipe (../shared/reference/huggingtweets-recipe.md).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS_DIR = HERE / "results"  # one file per machine class: figures from two kinds of CPU are never mixed
FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_features() -> dict[str, bool]:
    """The instruction-set extensions that decide which precision is fast here (Linux /proc/cpuinfo flags)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return {f: f in flags for f in FEATURES}


def machine_class(features: dict[str, bool] | None = None) -> str:
    """x86-amx, x86-avx512bf16, x86-avx512, x86-avx2, or the architecture's name."""
    f = features if features is not None else cpu_features()
    if platform.machine() not in ("x86_64", "AMD64"):
        return platform.machine().lower() or "unknown"
    for name, flag in (("x86-amx", "amx_bf16"), ("x86-avx512bf16", "avx512_bf16"), ("x86-avx512", "avx512f"),
                       ("x86-avx2", "avx2")):
        if f.get(flag):
            return name
    return "x86"


_PEAKS: dict[str, float] = {}


def machine(peaks: bool = True) -> dict:
    """The CPU, its features and class, and (measured once per process) its fp32 and bf16 matmul peaks."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    features = cpu_features()
    if peaks and not _PEAKS:
        native_bf16 = features["avx512_bf16"] or features["amx_bf16"]  # else emulated: ~1000x slower, a small n
        _PEAKS.update(fp32_gflops=round(matmul_peak(torch.float32), 1),
                      bf16_gflops=round(matmul_peak(torch.bfloat16, n=2048 if native_bf16 else 256), 1))
    return {"cpu": cpu, "class": machine_class(features), "features": [k for k, v in features.items() if v],
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.is_available(), "python": platform.python_version(), **_PEAKS}


def print_machine() -> dict:
    """Print what the figures depend on, before any figure (each benchmark starts with it)."""
    m = machine()
    show("machine", [("cpu", m["cpu"]), ("class", m["class"]), ("features", " ".join(m["features"]) or "none"),
                     ("matmul peak fp32, GFLOP/s", m["fp32_gflops"]), ("matmul peak bf16, GFLOP/s", m["bf16_gflops"]),
                     ("cores / torch threads", f"{m['cores']} / {m['torch_threads']}")])
    return m


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of a square matmul on this machine, best of repeated timed runs."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def sample_posts(handles=None) -> list[str]:
    """The bundled sample accounts' kept posts (all of them, or `handles`'), cleaned (the product's own cleaner)."""
    from bot.cleaning import clean_post
    from bot.samples.generate import SAMPLES, sample_path
    from bot.sources.files import ArchiveSource

    posts = []
    for handle in handles or SAMPLES:
        for p in ArchiveSource(sample_path(handle)).read().posts:
            c = clean_post(p.text, p.is_retweet)
            if c.kept:
                posts.append(c.text)
    return posts


def gpt2_124m_dir(seed: int = 0) -> Path:
    """A GPT-2-124M-shaped model (12 layers, 768 wide, 50,257 vocab, 1,024 context) with random weights,
    saved once with the tiny model's tokenizer, so that it runs offline. Token ids stay below the tiny
    vocabulary, but every matmul has GPT-2-124M's shape, which is what throughput depends on."""
    out = CACHE / "gpt2-124m-random"
    if (out / "config.json").exists():
        return out
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from bot.training.tiny import ensure_tiny_base

    tiny = ensure_tiny_base(CACHE / "models")
    tok = AutoTokenizer.from_pretrained(tiny, model_max_length=1024)
    eot = tok.eos_token_id
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(bos_token_id=eot, eos_token_id=eot, pad_token_id=eot))
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def results_path(machine_class_name: str | None = None) -> Path:
    return RESULTS_DIR / f"{machine_class_name or machine_class()}.json"


def save_results(section: str, figures: dict) -> Path:
    """Merge one benchmark's figures into results/<machine class>.json (atomically); returns its path. Each section
    keeps the machine it was measured on (its CPU, peaks, any cap on the libraries); the file's top-level `machine`
    is the latest run's."""
    m = machine()
    path = results_path(m["class"])
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data["machine"] = m
    data[section] = {**figures, "machine": m, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def show(title: str, rows: list[tuple[str, object]]) -> None:
    print(f"\n== {title}")
    for k, v in rows:
        print(f"  {k:<44} {v}")
