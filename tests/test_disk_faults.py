"""A full or read-only disk while a model is published: the old model stays intact and loadable, the job fails
with a clear reason, nothing half-written remains (issue: reliability under faults).

The full disk is a small tmpfs mounted for the test (root can mount one; elsewhere that test is skipped); the
read-only folder is a read-only bind mount as root, a chmod 555 folder otherwise."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.config import Settings
from bot.samples.generate import sample_path
from bot.service import Mimicbot

pytestmark = pytest.mark.slow


def _mount(*args: str) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def mounted(*args: str, target: Path):
    if not _mount(*args, str(target)):
        pytest.skip("cannot mount here (not root, or no mount permission)")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def tree(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(settings, tiny_base):
    """@ada_bytes's model, trained once (the "old" model), and the service that trained it."""
    bot = Mimicbot(settings)
    req = asyncio.run(bot.build_request([str(sample_path("ada_bytes"))], base_model=tiny_base, max_steps=2, seed=1))
    assert bot.run_job(bot.submit(req)["id"])["state"] == "succeeded"
    yield bot
    bot.close()


def retrain(bot: Mimicbot, tiny_base: str) -> dict:
    req = asyncio.run(bot.build_request(["ada_bytes"], base_model=tiny_base, max_steps=2, seed=2))
    return bot.run_job(bot.submit(req)["id"])


def assert_old_model_intact(bot: Mimicbot, models_dir: Path, before: dict) -> None:
    assert tree(models_dir / "ada_bytes") == before
    assert bot.generate("ada_bytes", n=1, seed=1).texts  # still loads and samples
    leftovers = [p.name for p in models_dir.iterdir() if p.name not in ("ada_bytes", ".work")]
    assert leftovers == [] and not list((models_dir / ".work").glob("job-*"))


def test_a_full_disk_at_save_fails_the_job_and_keeps_the_old_model(settings, trained, tiny_base, tmp_path):
    small = tmp_path / "small-models"
    small.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=16m", "tmpfs", target=small):
        shutil.copytree(settings.models_dir / "ada_bytes", small / "ada_bytes")
        before = tree(small / "ada_bytes")
        free = shutil.disk_usage(small).free
        (small / "filler").write_bytes(b"\0" * max(0, free - 256 * 1024))  # 256 KB left: less than a model
        bot = Mimicbot(Settings(mimicbot_data_dir=settings.data_dir, mimicbot_models_dir=small, _env_file=None))
        try:
            job = retrain(bot, tiny_base)
            assert job["state"] == "failed"
            assert job["error"].startswith("could not write the model: No space left on device"), job["error"]
            assert job["error"].endswith("the model ada_bytes that was there, if any, is unchanged")
            (small / "filler").unlink()
            assert_old_model_intact(bot, small, before)
        finally:
            bot.close()


def test_a_read_only_models_folder_fails_the_job_with_the_reason(settings, trained, tiny_base):
    models = settings.models_dir
    before = tree(models / "ada_bytes")
    if os.geteuid() == 0:
        context = mounted("--bind", "-o", "ro", str(models), target=models)
    else:
        context = _chmod_read_only(models)
    with context:
        job = retrain(trained, tiny_base)
        assert job["state"] == "failed" and job["error"].startswith("could not write the model: "), job["error"]
        assert "Read-only file system" in job["error"] or "Permission denied" in job["error"]
    assert_old_model_intact(trained, models, before)


@contextmanager
def _chmod_read_only(path: Path):
    modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if p.is_dir()}
    for p in modes:
        p.chmod(0o555)
    try:
        yield path
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
