"""Run every benchmark in order (training first: it leaves the trained model the others use)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["train_throughput.py", "generation.py", "daemon_lag.py", "cache.py", "concurrency.py", "lora.py"]

if __name__ == "__main__":
    for script in SCRIPTS:
        print(f"\n### {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *()], check=True)
    sys.path.insert(0, str(HERE.parent))
    from bench.common import results_path

    print(f"\nfigures: {results_path()}")
