"""Settings, read from the environment or a `.env` file. Never from code, never logged.

Every setting is documented in `.env.example`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_unset(cls, data):
        """`DISCORD_TOKEN=` (as in .env.example, and as docker compose's env_file passes it) leaves an optional
        setting unset instead of failing to parse ''. Plain string settings keep '' as a value."""
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items()
                if not (v == "" and k in cls.model_fields and type(None) in get_args(cls.model_fields[k].annotation))}

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

    # Bluesky: reads go to the public AppView, posts to the bot's own account (app password, not the main one)
    bluesky_handle: str | None = None
    bluesky_app_password: SecretStr | None = None
    bluesky_base_url: str = "https://bsky.social"  # where the bot logs in (its PDS or the bsky.social entryway)
    bluesky_appview_url: str = "https://public.api.bsky.app"  # unauthenticated reads of any public account

    # Mastodon: the bot's instance and token; when the API base is unset, reads go to the account's own instance
    mastodon_api_base: str | None = None
    mastodon_access_token: SecretStr | None = None
    mastodon_visibility: Literal["public", "unlisted", "private", "direct"] = "unlisted"
    mimicbot_mastodon_include_cw: bool = False  # read statuses behind a content warning (skipped by default)
    mimicbot_mastodon_cw: str | None = None  # content warning on every post to Mastodon (`post --cw` for one)

    # Discord
    discord_token: SecretStr | None = None
    discord_owner_ids: str = ""  # comma-separated user ids allowed to run owner commands
    discord_api_base: str | None = None  # another Discord API host (a proxy or a local test server)

    # Training and generation
    mimicbot_train_workers: int | None = Field(default=None, ge=1)
    mimicbot_cache_models: int = Field(default=2, ge=1)
    mimicbot_cache_mb: int = Field(default=4096, ge=1)
    # LoRA personas kept at once over their shared bases (each base counts as one of MIMICBOT_CACHE_MODELS)
    mimicbot_cache_adapters: int = Field(default=64, ge=1)
    # dtype of cached models' weights: auto = bf16 where the CPU/GPU computes it natively (2.3x faster decoding
    # on this project's benchmark machine, half the memory), else fp32 (CPU) / fp16 (older GPUs).
    mimicbot_generation_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # int8 generation (the `int8` extra, CTranslate2): auto = a model with an int8 copy generates with it (trainer
    # converts after training; older models are converted on first use, in the background); off = transformers.
    mimicbot_int8: Literal["auto", "off"] = "auto"
    mimicbot_base_model: str = "gpt2"

    # Posting (bot/posting): guards, schedules, approval and X replies
    mimicbot_disclosure: str = " 🤖"  # appended to every post; "" for none
    mimicbot_blocklist: str = ""  # comma-separated words/phrases that make a post unpostable
    mimicbot_repeat_window: int = Field(default=50, ge=0)  # never repeat one of the last N posts
    mimicbot_post_candidates: int = Field(default=8, ge=1, le=64)  # samples drawn per post, first that passes wins
    mimicbot_schedule_timezone: str = "UTC"  # default time zone of new schedules
    mimicbot_schedule_grace_seconds: int = Field(default=300, ge=1)  # a fire later than this is skipped
    mimicbot_schedule_poll_seconds: float = Field(default=5.0, gt=0)  # how often the daemon looks for edits
    mimicbot_approval_channel_id: int | None = None  # Discord channel for drafts that need a human
    mimicbot_reply_model: str | None = None  # the model that answers X mentions; unset: no replies
    mimicbot_reply_poll_seconds: float = Field(default=60.0, gt=0)
    mimicbot_reply_max_age_minutes: int = Field(default=30, ge=1)  # older mentions are never answered
    mimicbot_reply_per_conversation: int = Field(default=3, ge=0)
    mimicbot_reply_per_user_hour: int = Field(default=3, ge=0)
    mimicbot_reply_bot_threshold: int = Field(default=10, ge=1)  # replies to one account in 24 h: treat as a bot
    mimicbot_reply_blocklist: str = ""  # comma-separated X handles never answered

    # Operations, scale-out, publishing, tracking (bot/ops.py, bot/training/ray_executor.py, bot/hub.py,
    # bot/training/tracking.py)
    mimicbot_log_file_mb: int = Field(default=10, ge=1)  # data/logs/mimicbot.log rotates at this size
    mimicbot_log_backups: int = Field(default=5, ge=0)  # rotated log files kept
    mimicbot_heartbeat_seconds: float = Field(default=30.0, gt=0)  # health fails after 3 missed heartbeats
    mimicbot_executor: Literal["local", "ray"] = "local"  # where training jobs run
    ray_address: str | None = None  # "HOST:6379" or "ray://HOST:10001"; unset: a Ray instance on this host
    mimicbot_ray_storage: Literal["shared", "upload"] = "shared"  # models dir shared by all nodes, or uploaded
    mimicbot_wandb: Literal["off", "offline", "online"] = "off"
    wandb_project: str = "mimicbot"
    wandb_entity: str | None = None
    wandb_api_key: SecretStr | None = None
    hf_token: SecretStr | None = None  # write token for `mimicbot models push`
    hf_endpoint: str | None = None  # unset: huggingface_hub's default (the public hub)

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

    def missing_credentials(self, network: str) -> list[str]:
        """The settings (environment names) a network still lacks for posting; empty when it is configured.
        Networks: x (posting and replies: OAuth 1.0a), bsky, mastodon, discord."""
        return [name.upper() for name in NETWORK_CREDENTIALS[network] if not getattr(self, name)]

    @property
    def replies_configured(self) -> bool:
        """X replies run in the daemon: a reply model and the X keys to post with."""
        return bool(self.mimicbot_reply_model) and not self.missing_credentials("x")


NETWORK_CREDENTIALS = {  # what each network needs before the daemon can post to it
    "x": ("twitter_api_key", "twitter_api_secret", "twitter_access_token", "twitter_access_secret"),
    "bsky": ("bluesky_handle", "bluesky_app_password"),
    "mastodon": ("mastodon_api_base", "mastodon_access_token"),
    "discord": ("discord_token",),
}


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
