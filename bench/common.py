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
RESULTS = HERE / "results" / "latest.json"


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "python": platform.python_version()}


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


def sample_posts() -> list[str]:
    """The bundled sample accounts' kept posts, cleaned (the product's own cleaner)."""
    from bot.cleaning import clean_post
    from bot.samples.generate import SAMPLES, sample_path
    from bot.sources.files import ArchiveSource

    posts = []
    for handle in SAMPLES:
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


def save_results(section: str, figures: dict) -> None:
    """Merge one benchmark's figures into results/latest.json (atomically)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["machine"] = machine()
    data[section] = {**figures, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, RESULTS)


def show(title: str, rows: list[tuple[str, object]]) -> None:
    print(f"\n== {title}")
    for k, v in rows:
        print(f"  {k:<44} {v}")
