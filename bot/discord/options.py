"""The Discord face's own knobs, read from the environment or `.env` like every other setting.

Secrets (the bot token, owner ids) stay in `bot.config.Settings`; these are behaviour only, each with the
default a public server wants. Environment names are the field names upper-cased with the prefix
`MIMICBOT_DISCORD_`, e.g. `MIMICBOT_DISCORD_PROGRESS_INTERVAL=15`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DiscordOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIMICBOT_DISCORD_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    prefix: str = "!"  # prefix of text commands (`!generate`); they need the message content intent
    message_content: bool = True  # ask for the privileged intent; off: slash commands and mentions only

    # training progress messages: edited at most this often (seconds)
    progress_interval: float = Field(default=15.0, ge=0)
    # cap on training steps of jobs started from Discord (None: the recipe's full epochs); tests and demos
    train_max_steps: int | None = Field(default=None, ge=1)
    # base models a Discord user may choose with `/train base_model:` (comma-separated; the bot's default
    # base model, MIMICBOT_BASE_MODEL, is always offered). Never free text: a name is a download or a folder.
    # GPT-2 (the recipe's), then small modern bases that train on a CPU (README: "Base models").
    base_models: str = "gpt2,distilgpt2,HuggingFaceTB/SmolLM2-135M,HuggingFaceTB/SmolLM2-360M,Qwen/Qwen2.5-0.5B"
    # training jobs a server may have queued or running at once
    max_queued_per_guild: int = Field(default=3, ge=1)

    # per-user cooldowns: `rate` uses every `per` seconds
    generate_rate: int = Field(default=3, ge=1)
    generate_per: float = Field(default=30.0, gt=0)
    train_rate: int = Field(default=1, ge=1)
    train_per: float = Field(default=300.0, gt=0)
    # answers to @mentions in enabled channels: one per channel per this many seconds
    mention_per: float = Field(default=20.0, gt=0)

    # posts in a `/generate` reply, and the most one may ask for (one embed each; Discord allows 10)
    generate_default_n: int = Field(default=3, ge=1, le=10)
    generate_max_n: int = Field(default=5, ge=1, le=10)
    # samples in the embed that announces a trained model
    completion_samples: int = Field(default=3, ge=0, le=10)

    # learning members' voices (/optin): the most past messages of one member read back per server, and the most
    # messages (of everyone) read per channel looking for them
    backfill_limit: int = Field(default=10_000, ge=0)
    backfill_scan_limit: int = Field(default=200_000, ge=0)

    @property
    def base_model_list(self) -> list[str]:
        return [m.strip() for m in self.base_models.split(",") if m.strip()]


def load_options(**overrides) -> DiscordOptions:
    return DiscordOptions(**overrides)
