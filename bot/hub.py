"""Push a trained model to the Hugging Face hub: `mimicbot models push MODEL --repo OWNER/NAME`.

The whole model folder goes up in one commit: weights (a LoRA persona's adapter: an adapter repository whose card
names its base), tokenizer, generation defaults, training.json, the
anti-copy index (hashes only, never the posts), the pictures (predictions.png, loss.png) and the card,
README.md. The card is rendered again for the hub (bot/training/card.py) with the thumbnail as an absolute
URL of the repository's predictions.png, as huggingtweets' cards pointed at theirs. The repository is created
if it does not exist (public unless --private). The token is HF_TOKEN (a write token); HF_ENDPOINT points at
another hub (a mirror, a private hub, a test server).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .errors import ConfigError, MimicbotError, ValidationError
from .modelfolder import ADAPTER_FILE, CARD_FILE, CONFIG_FILE, INT8_DIR, PREDICTIONS_FILE, TRAINING_FILE
from .redaction import Redactor, redacted

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
# The hub's rule for a repository id: owner/name, each made of letters, digits, '-', '_' and '.', neither
# starting nor ending with '-' or '.', no '--' or '..', at most 96 characters.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
REPO_ID = re.compile(rf"^{_PART}/{_PART}$")
REQUIRED = (CARD_FILE,)  # and CONFIG_FILE, or ADAPTER_FILE for a LoRA persona (an adapter repository)


class HubError(MimicbotError):
    """The hub could not be reached, or refused the upload; nothing of the model changed locally."""


@dataclass
class PushResult:
    repo_id: str
    url: str
    commit_url: str
    files: list[str]

    def as_dict(self) -> dict:
        return {"repo_id": self.repo_id, "url": self.url, "commit_url": self.commit_url, "files": self.files}


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id or "") or "--" in repo_id or ".." in repo_id:
        raise ValidationError(f"{repo_id!r} is not a hub repository id: use OWNER/NAME (letters, digits, '-', "
                              "'_' and '.'), e.g. alice/ada_bytes")
    return repo_id


def model_files(model_dir: Path) -> list[str]:
    """The files of a model folder to upload (relative, sorted): everything but hidden files and folders and the
    int8 copy (INT8_DIR: made again from the weights wherever the model is used)."""
    files = [p.relative_to(model_dir).as_posix() for p in sorted(model_dir.rglob("*")) if p.is_file()]
    files = [f for f in files if not any(part.startswith(".") for part in f.split("/"))
             and f.split("/")[0] != INT8_DIR]
    missing = [f for f in REQUIRED if f not in files]
    if CONFIG_FILE not in files and ADAPTER_FILE not in files:
        missing.insert(0, CONFIG_FILE)
    if missing:
        raise ValidationError(f"{model_dir} lacks {', '.join(missing)}: only a model trained by mimicbot "
                              "(with its card) can be pushed")
    return files


def hub_card(model_dir: Path, repo_id: str, endpoint: str) -> bytes:
    """The card as the hub shows it: the model's own README.md, re-rendered from training.json with an
    absolute thumbnail URL. A model without training.json keeps its README.md as it is."""
    from .training.card import render_card

    training = model_dir / TRAINING_FILE
    if not training.is_file() or not (model_dir / PREDICTIONS_FILE).is_file():
        return (model_dir / CARD_FILE).read_bytes()
    info = json.loads(training.read_text(encoding="utf-8"))
    info["thumbnail"] = f"{endpoint.rstrip('/')}/{repo_id}/resolve/main/{PREDICTIONS_FILE}"
    return render_card(info).encode("utf-8")


def push_model(settings: Settings, model_id: str, repo_id: str, *, private: bool = False) -> PushResult:
    """Create `repo_id` on the hub if needed and upload the model's folder to it in one commit."""
    from .generation.models import ModelStore

    check_repo_id(repo_id)
    model_dir = ModelStore(settings.models_dir).path(model_id)  # UnknownModel
    token = settings.secret("hf_token")
    Redactor.for_settings(settings)  # the hub's error text is redacted (an upstream may echo the token)
    if not token:
        raise ConfigError("HF_TOKEN is not set: create a write token at https://huggingface.co/settings/tokens "
                          "and put HF_TOKEN=... in .env")
    files = model_files(model_dir)
    endpoint = settings.hf_endpoint or DEFAULT_ENDPOINT
    api, operations = _prepare(model_dir, files, repo_id, endpoint, token)
    log.info("pushing %s (%d files) to %s on %s", model_id, len(files), repo_id, endpoint)
    with _hub_errors(repo_id, endpoint):
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, commit_message=f"Upload {model_id} (mimicbot)")
    log.info("pushed %s to %s: %s", model_id, url, commit.commit_url)
    return PushResult(repo_id=repo_id, url=str(url), commit_url=commit.commit_url, files=files)


def _prepare(model_dir: Path, files: list[str], repo_id: str, endpoint: str, token: str):
    try:
        from huggingface_hub import CommitOperationAdd, HfApi
    except ImportError:
        raise ConfigError("pushing to the hub needs huggingface_hub: pip install 'mimicbot[hub]'") from None
    card = hub_card(model_dir, repo_id, endpoint)
    operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=card if f == CARD_FILE else str(model_dir / f))
                  for f in files]
    return HfApi(endpoint=endpoint, token=token), operations


@contextmanager
def _hub_errors(repo_id: str, endpoint: str) -> Iterator[None]:
    """Turn the hub client's errors into a HubError with the reason a person can act on, with every secret
    taken out of its text (a proxy or a misbehaving hub may echo the request, token included)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - translated when it is the hub's, redacted either way
        translated = _hub_error(e, repo_id, endpoint)
        if translated is None:
            raise redacted(e)
        raise redacted(translated) from None


def _hub_error(e: Exception, repo_id: str, endpoint: str) -> HubError | None:
    from huggingface_hub.errors import HfHubHTTPError, HTTPError

    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            return HubError(f"the hub refused HF_TOKEN for {repo_id} ({status}): it must be a write token "
                                "of the repository's owner")
        detail = (e.server_message or str(e)).strip().splitlines()[0]
        return HubError(f"the hub refused the upload to {repo_id} ({status}): {detail}")
    if isinstance(e, ValueError):  # the hub client's checks of the hub's answers (e.g. invalid card metadata)
        return HubError(f"the hub refused the upload to {repo_id}: {e}")
    if isinstance(e, (HTTPError, OSError)):
        return HubError(f"cannot reach the hub at {endpoint}: {e}")
    return None
