"""`mimicbot models push`: a model trained here goes to a stand-in hub on 127.0.0.1 (tests/fakes/hub_server.py),
reached through HF_ENDPOINT, by huggingface_hub's own create_repo/create_commit over real HTTP.

The stand-in speaks the git-lfs upload protocol, so the CLI runs with HF_HUB_DISABLE_XET=1; the real hub
would take the large files through Xet instead (huggingface_hub picks that itself when hf_xet is installed).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.errors import ConfigError, UnknownModel, ValidationError
from bot.hub import HubError, check_repo_id, push_model
from bot.samples.generate import sample_path
from bot.service import Mimicbot
from bot.training.trainer import train
from bot.training.supervisor import work_dir_for
from tests.fakes.hub_server import FakeHub

pytest.importorskip("huggingface_hub", reason="pushing to the hub is the optional `hub` extra")

TOKEN = "hf_test_0123456789abcdefSECRET"
REPO = "alice/ada-bot"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Settings:
    """Settings whose models dir holds one real (tiny, 2-step) model, ada_bytes, with its card and pictures."""
    from bot.training.tiny import ensure_tiny_base

    root = tmp_path_factory.mktemp("trained")
    settings = Settings(mimicbot_data_dir=root / "data", mimicbot_models_dir=root / "models", _env_file=None)
    bot = Mimicbot(settings)
    try:
        bot.fetch_blocking([str(sample_path("ada_bytes"))])
        base = str(ensure_tiny_base(root / "base"))
        req = asyncio.run(bot.build_request(["ada_bytes"], base_model=base, seed=5, max_steps=2))
    finally:
        bot.close()
    work_dir = work_dir_for(req.models_dir, 1)
    work_dir.parent.mkdir(parents=True)
    train(req, work_dir, lambda event: None)
    return settings


@pytest.fixture
def hub():
    with FakeHub(TOKEN) as server:
        yield server


def push_cli(settings: Settings, hub: FakeHub, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1",
           "MIMICBOT_DATA_DIR": str(settings.data_dir), "MIMICBOT_MODELS_DIR": str(settings.models_dir)}
    return subprocess.run([sys.executable, "-m", "bot", "--log-level", "DEBUG", "models", "push", *args],
                          env=env, capture_output=True, text=True, timeout=300, cwd=settings.data_dir.parent)


def local_files(model_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}


def test_push_uploads_the_model_its_card_and_pictures_and_can_push_again(trained, hub):
    res = push_cli(trained, hub, "ada_bytes", "--repo", REPO, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["url"] == f"{hub.url}/{REPO}"

    repo = hub.repos[REPO]
    model_dir = trained.models_dir / "ada_bytes"
    mine = local_files(model_dir)
    assert set(repo.files) == set(mine) == set(report["files"])
    assert {"README.md", "predictions.png", "loss.png", "model.safetensors", "config.json",
            "training.json"} <= set(repo.files)
    for path, data in mine.items():
        if path != "README.md":
            assert repo.files[path] == data, path
    # the weights and pictures went up as LFS objects, small text files inline
    assert {"model.safetensors", "predictions.png", "loss.png"} <= repo.lfs_paths
    assert "config.json" not in repo.lfs_paths
    # the card: the model's own, with an absolute thumbnail on this hub
    card = repo.files["README.md"].decode()
    thumbnail = f"thumbnail: {hub.url}/{REPO}/resolve/main/predictions.png"
    assert thumbnail in card
    assert card == mine["README.md"].decode().replace("thumbnail: predictions.png", thumbnail)
    assert "🤖 AI BOT 🤖" in card and "| Tweets kept |" in card
    # one commit, every API call carried the token, and the token was never written out
    assert [c["summary"] for c in repo.commits] == ["Upload ada_bytes (mimicbot)"]
    assert [s for s in hub.requests if s.method == "POST" and not s.authorised] == []
    log_file = trained.data_dir / "logs" / "mimicbot.log"
    assert "pushed ada_bytes to" in log_file.read_text()
    for text in (res.stdout, res.stderr, log_file.read_text()):
        assert TOKEN not in text

    # pushing again adds a commit to the repository that now exists
    again = push_cli(trained, hub, "ada_bytes", "--repo", REPO)
    assert again.returncode == 0, again.stderr
    assert f"pushed ada_bytes to {hub.url}/{REPO}" in again.stdout
    assert len(repo.commits) == 2


def test_a_refused_token_is_a_clear_error_and_nothing_is_created(trained, hub):
    res = push_cli(trained, hub, "ada_bytes", "--repo", REPO, token="hf_wrong_token_value")
    assert res.returncode == 2
    assert "the hub refused HF_TOKEN for alice/ada-bot (401)" in res.stderr
    assert "hf_wrong_token_value" not in res.stderr + res.stdout
    assert hub.repos == {}


def test_unreachable_hub(trained):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = trained.model_copy(update={"hf_endpoint": f"http://127.0.0.1:{port}", "hf_token": SecretStr(TOKEN)})
    with pytest.raises(HubError, match=f"cannot reach the hub at http://127.0.0.1:{port}"):
        push_model(settings, "ada_bytes", REPO)


def test_bad_input_is_refused_before_any_request(trained, hub, tmp_path):
    settings = trained.model_copy(update={"hf_endpoint": hub.url, "hf_token": SecretStr(TOKEN)})
    with pytest.raises(UnknownModel, match="no model 'nobody'"):
        push_model(settings, "nobody", REPO)
    for bad in ("ada-bot", "alice/", "alice/ada bot", "-alice/ada", "alice/ada--bot", "a/b/c"):
        with pytest.raises(ValidationError, match="is not a hub repository id"):
            push_model(settings, "ada_bytes", bad)
    with pytest.raises(ConfigError, match="HF_TOKEN is not set"):
        push_model(settings.model_copy(update={"hf_token": None}), "ada_bytes", REPO)
    # a model folder without its card is not one of ours
    (tmp_path / "models" / "bare").mkdir(parents=True)
    (tmp_path / "models" / "bare" / "config.json").write_text("{}")
    with pytest.raises(ValidationError, match="lacks README.md"):
        push_model(settings.model_copy(update={"mimicbot_models_dir": tmp_path / "models"}), "bare", REPO)
    assert hub.requests == []


def test_repo_ids_the_hub_accepts():
    for good in ("alice/ada-bot", "Org_1/model.v2", "a/b"):
        assert check_repo_id(good) == good
