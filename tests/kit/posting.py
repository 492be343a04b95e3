"""Shared by the posting and schedule tests: a tiny model trained once per session through the service and
its training pool, settings that point at it and at the fake X server, a service posting there, and a clock (fixtures registered in
tests/conftest.py).

The model is real: base_model "tiny" (built on this machine), fine-tuned for a few steps on the bundled
sample archive by the same job path `mimicbot train` takes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from bot.config import Settings
from bot.service import Mimicbot
from tests.fakes.x_server import TEST_CREDENTIALS

SAMPLES = Path(__file__).resolve().parents[2] / "bot" / "samples"
START = datetime(2031, 3, 3, 8, 59, 30, tzinfo=UTC)  # a Monday, 30 s before 09:00 UTC


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> tuple[Path, str]:
    """(models dir, model id) of a tiny model trained once for the whole session."""
    return _train(tmp_path_factory.mktemp("posting-model"))


def _train(root: Path) -> tuple[Path, str]:
    settings = Settings(mimicbot_data_dir=root / "data", mimicbot_models_dir=root / "models",
                        mimicbot_base_model="tiny", _env_file=None)
    service = Mimicbot(settings)
    try:
        request = asyncio.run(service.build_request([str(SAMPLES / "ada_bytes.zip")], max_steps=3, seed=1))
        job = service.run_job(service.submit(request)["id"])
        assert job["state"] == "succeeded", job.get("error")
        return settings.models_dir, request.model_id
    finally:
        service.close()


def posting_settings(tmp_path: Path, models_dir: Path, x_url: str | None = None, **overrides) -> Settings:
    """Settings for one test: its own database, the session's model, the fake X server's credentials."""
    values = {"mimicbot_data_dir": tmp_path / "data", "mimicbot_models_dir": models_dir,
              "mimicbot_schedule_grace_seconds": 120, "mimicbot_post_candidates": 2, **TEST_CREDENTIALS,
              **overrides}
    if x_url:
        values["twitter_api_base"] = x_url
    return Settings(_env_file=None, **values)


@pytest.fixture
def posting_service(tmp_path, trained_models, x_server):
    """A service over the session's trained model that posts to the fake X server."""
    models_dir, _ = trained_models
    bot = Mimicbot(posting_settings(tmp_path, models_dir, x_server.url))
    yield bot
    bot.close()


@pytest.fixture
def clock():
    """A controllable clock: time stands still at START until the test moves it (`clock.shift(seconds)`)."""
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


class RecordingSleep:
    """An asyncio sleep that moves the controllable clock instead of waiting, and remembers each wait."""

    def __init__(self, clock=None):
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.shift(timedelta(seconds=seconds))
        await asyncio.sleep(0)
