"""Benchmark 4 — model cache: cold load time and resident memory per cached model (the tiny model and the
GPT-2-124M-shaped one), measured in this process through the service's cache.

    python bench/cache.py
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, print_machine, save_results, show  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    print_machine()
    from bot.config import Settings
    from bot.service import Mimicbot

    models = CACHE / "models"
    if not (models / "bench-124m" / "config.json").exists():
        sys.exit("bench/.cache/models/bench-124m is missing: run bench/train_throughput.py first")
    import torch  # noqa: F401  (imports are not the cache's cost)
    import transformers  # noqa: F401

    tmp = Path(tempfile.mkdtemp())
    bot = Mimicbot(Settings(mimicbot_models_dir=models, mimicbot_data_dir=tmp, _env_file=None))
    from bot.training.tiny import ensure_tiny_base

    ensure_tiny_base(models)
    figures = {}
    for model_id in ("bench-124m",):
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        loaded = bot.cache.get(model_id)
        cold = time.perf_counter() - t
        gc.collect()
        after = rss_mb()
        t = time.perf_counter()
        bot.cache.get(model_id)
        warm = time.perf_counter() - t
        figures[model_id] = {
            "cold_load_s": round(cold, 2), "warm_hit_us": round(warm * 1e6, 1),
            "rss_added_mb": round(after - before, 1), "parameter_mb": round(loaded.nbytes / 2**20, 1),
            "dtype": "ctranslate2 int8" if loaded.engine is not None else str(next(loaded.model.parameters()).dtype),
        }
    figures["cache_stats"] = bot.cache.stats()
    show("model cache", [(k, v) for k, v in figures.items()])
    save_results("cache", figures)
    bot.close()


if __name__ == "__main__":
    main()
