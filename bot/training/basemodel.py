"""The base model a request names, checked before a job is queued: `tiny`, a local model folder, or a hub id that is
either cached on this machine or downloadable now. torch-free and quick, so every face can call it first.

A hub model that is not cached needs the hub: when the hub cannot be reached (no network, HF_HUB_OFFLINE set),
the request is refused at once with what to do instead, rather than after a minute of download retries in the
training child. A name that cannot be a hub id is never tried at all.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ValidationError
from ..generation.framing import context_length

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 3.0
OFFLINE_HINT = "use --base-model tiny (the offline demo model; tiny-llama and tiny-qwen2 too) or a local model folder"


def base_kind(name: str) -> str:
    """What a base model's name names on this machine: "tiny" (an offline demo model: tiny, tiny-llama,
    tiny-qwen2; bot/training/tiny.py), "local" (a folder), "missing" (a path naming no folder) or "hub" (a hub id)."""
    from .tiny import TINY_BASES

    if name in TINY_BASES:
        return "tiny"
    path = Path(name).expanduser()
    if path.is_dir():
        return "local"
    if path.is_absolute() or name.startswith((".", "~")) or path.exists():
        return "missing"
    return "hub"


def base_model_context(name: str, models_dir: Path, hf_endpoint: str | None = None) -> int | None:
    """The base model's context in tokens (None when it cannot be known without downloading the model), or a
    ValidationError saying why `name` cannot be loaded here."""
    from .tiny import N_POSITIONS

    kind = base_kind(name)
    if kind == "tiny":
        return N_POSITIONS
    if kind == "local":
        return _context_of(Path(name).expanduser() / "config.json",
                           f"{name!r} is a folder without config.json, not a model folder")
    if kind == "missing":
        raise ValidationError(f"cannot load base model {name!r}: no such model folder ({OFFLINE_HINT}, or gpt2)")
    return _hub_context(name, hf_endpoint)


def _hub_context(repo_id: str, hf_endpoint: str | None) -> int | None:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ValidationError(f"base model {repo_id!r} is neither a hub model id (like gpt2 or "
                              f"openai-community/gpt2) nor a local folder; {OFFLINE_HINT}") from None
    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return _context_of(Path(cached), f"the cached config.json of {repo_id!r} cannot be read")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise ValidationError(f"base model {repo_id!r} is not cached on this machine and HF_HUB_OFFLINE is set; "
                              f"{OFFLINE_HINT}")
    endpoint = (hf_endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    if not hub_reachable(endpoint):
        raise ValidationError(f"base model {repo_id!r} is not cached on this machine and the Hugging Face hub "
                              f"({endpoint}) cannot be reached; {OFFLINE_HINT}")
    return None


def hub_reachable(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether an HTTP request to `endpoint` gets any answer within `timeout` seconds (name lookup included:
    the request runs in a thread that is abandoned when it takes too long). Proxies from the environment apply."""
    import httpx

    if not urlsplit(endpoint).hostname:
        return False
    answered = threading.Event()

    def probe() -> None:
        try:
            httpx.head(endpoint, timeout=timeout, follow_redirects=False)
        except (httpx.HTTPError, OSError, ValueError):
            return
        answered.set()

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return answered.is_set()


def _context_of(config_path: Path, unreadable: str) -> int | None:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValidationError(f"cannot load base model: {unreadable}") from None
    if not isinstance(config, dict):
        raise ValidationError(f"cannot load base model: {unreadable}")
    return context_length(config)


__all__ = ["base_kind", "base_model_context", "hub_reachable"]
