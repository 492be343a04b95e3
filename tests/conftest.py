"""Shared fixtures: a fresh settings object pointing at a temporary data and models directory."""

from __future__ import annotations

import pytest

from bot.config import Settings

pytest_plugins = ["tests.fakes.x_server"]


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return Settings(
        mimicbot_data_dir=tmp_path / "data",
        mimicbot_models_dir=tmp_path / "models",
        _env_file=None,
    )
