"""Settings, read from the environment or a `.env` file. Never from code, never logged.

Every setting is documented in `.env.example`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Stores
    mimicbot_data_dir: Path = Path("data")
    mimicbot_models_dir: Path = Path("models")

    # X / Twitter
    twitter_bearer_token: SecretStr | None = None
    twitter_api_base: str = "https://api.x.com"
    twitter_api_key: SecretStr | None = None
    twitter_api_secret: SecretStr | None = None
    twitter_access_token: SecretStr | None = None
    twitter_access_secret: SecretStr | None = None

    # Discord
    discord_token: SecretStr | None = None
    discord_owner_ids: str = ""  # comma-separated user ids allowed to run owner commands

    # Training and generation
    mimicbot_train_workers: int | None = Field(default=None, ge=1)
    mimicbot_cache_models: int = Field(default=2, ge=1)
    mimicbot_cache_mb: int = Field(default=4096, ge=1)
    mimicbot_base_model: str = "gpt2"

    @property
    def data_dir(self) -> Path:
        return self.mimicbot_data_dir

    @property
    def models_dir(self) -> Path:
        return self.mimicbot_models_dir

    @property
    def db_path(self) -> Path:
        return self.mimicbot_data_dir / "mimicbot.db"

    @cached_property
    def train_workers(self) -> int:
        if self.mimicbot_train_workers:
            return self.mimicbot_train_workers
        try:
            import torch

            return max(1, torch.cuda.device_count())
        except Exception:  # pragma: no cover - torch missing is an install error elsewhere
            return 1

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting, or None. Use at the call site only; never log it."""
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
