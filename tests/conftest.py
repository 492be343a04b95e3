"""Shared fixtures: a fresh settings object pointing at a temporary data and models directory."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

# The int8 path (CTranslate2) converts every model on first use in a background process: the suite runs the
# transformers path, which stays the fallback, and tests/test_int8.py turns int8 on where it tests it.
os.environ.setdefault("MIMICBOT_INT8", "off")
# One torch thread per process (this one, its training children, and each `-n` worker): the suite's models are
# tiny, and on a shared 2-core machine two threads per tiny model mostly wait for each other (the fast subset's
# model tests took 22.7 s on two threads against 5.8 s on one, load average 3).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests' scratch folders (tmp_path) in memory where the machine has /dev/shm: on this project's machines removing
# a folder from the disk takes about 3.6 ms (from tmpfs, microseconds), and each run creates some 700 folders
# and removes an earlier run's: 4 s of the fast subset. PYTEST_DEBUG_TEMPROOT is pytest's own setting for it.
if os.access("/dev/shm", os.W_OK):
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", "/dev/shm")
# Compiled bytecode is kept even where PYTHONDONTWRITEBYTECODE is set (as on this project's machines): without it
# every run compiles and assertion-rewrites the tests and bot/ again, 10 of the fast subset's seconds. Kept apart
# in .pytest_cache/pycache, so the checkout stays as free of __pycache__ folders as the variable asked.
if sys.dont_write_bytecode:
    sys.pycache_prefix = str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "pycache")
    sys.dont_write_bytecode = False

from bot.config import Settings

pytest_plugins = ["tests.fakes.x_server", "tests.fakes.bsky_server", "tests.fakes.mastodon_server", "tests.kit.models",
                  "tests.kit.posting"]


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return Settings(
        mimicbot_data_dir=tmp_path / "data",
        mimicbot_models_dir=tmp_path / "models",
        _env_file=None,
    )


# -- the fast subset: `pytest -m "not slow"` ------------------------------------------------------------------
# A test is slow when it needs a model (the tiny base is built, a model trained) or starts processes (the
# console script, training children, Ray). Marked here from what it uses, so a new test cannot forget it.
SLOW_FIXTURES = {"tiny_base", "trained_models", "tiny_llama_base", "tiny_qwen2_base", "modern_personas"}
SLOW_MODULES = {"test_daemon.py", "test_cli_train.py", "test_ray.py", "test_pool.py", "test_trainer.py",
                "test_tracking.py", "test_deploy.py", "test_card.py", "test_hub.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def _fast_subset(config) -> bool:
    return " ".join(config.option.markexpr.split()) == "not slow"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads -n
def pytest_cmdline_main(config):
    """`pytest -m "not slow"` on the whole suite runs on two workers where the machine has two cores: 18-20 s
    against 26 s in one process on this project's 2-core machines (in one of their slow hours). Kept in one process:
    any -n or --tx given (`-n 0`), a test or file named, -k, --lf, --sw, -s, --pdb or --trace (workers have no
    terminal)."""
    option = config.getoption
    if (config.pluginmanager.has_plugin("xdist") and _fast_subset(config) and option("numprocesses") is None
            and not option("tx") and config.args_source == pytest.Config.ArgsSource.TESTPATHS
            and not any(option(name, None) for name in ("keyword", "lf", "stepwise", "usepdb", "trace"))
            and option("capture") != "no" and not hasattr(config, "workerinput")
            and len(os.sched_getaffinity(0)) >= 2):
        config.option.numprocesses = 2


def pytest_ignore_collect(collection_path, config):
    """The fast subset does not even import a module whose every test is slow (their imports: torch's training
    parts, wandb, Ray)."""
    if collection_path.name in SLOW_MODULES and _fast_subset(config):
        return True
    return None


# Python's full garbage collections walk every live object; a test run holds half a million that live as long as
# the run (discord.py, transformers, pydantic's schemas), and the fast subset spent 2.4 s in 13 full collections.
# There, what collection imported is frozen, then what survives each full collection: each walks only the objects
# made since the last (0.9 s in all). The price: a cycle that takes in a frozen object (the test that was running
# then: its loop, its models) is never collected, and its finalizers do not run. Only in the fast subset, where it
# was measured and where its seconds count; undone when the run ends.
def _freeze_survivors(phase, info):
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def pytest_collection_finish(session):
    if _fast_subset(session.config):
        gc.collect()
        gc.freeze()
        gc.callbacks.append(_freeze_survivors)


def pytest_unconfigure(config):
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
        gc.unfreeze()
