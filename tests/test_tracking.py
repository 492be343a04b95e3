"""W&B tracking (bot/training/tracking.py): a real training run with MIMICBOT_WANDB=offline, read back from the run's
own transaction log; and tracking off leaves nothing behind.

wandb (the `wandb` extra) writes an offline run as `wandb/offline-run-*/run-*.wandb`: a LevelDB-style log
of protobuf `Record`s (wandb/proto/wandb_internal.proto). `read_run` below reads that format, so the tests
check what `wandb sync` would upload, not what our code meant to send.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import struct
from pathlib import Path

import pydantic
import pytest

from bot.config import Settings
from bot.errors import ConfigError
from bot.samples.generate import sample_path
from bot.service import Mimicbot
from bot.training.tracking import Tracker, artifact_name
from bot.training.trainer import train
from bot.training.supervisor import work_dir_for

wandb = pytest.importorskip("wandb", reason="Weights & Biases is an optional extra: pip install 'mimicbot[wandb]'")
from wandb.proto import wandb_internal_pb2  # noqa: E402

BLOCK = 32768  # LevelDB log block size
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def log_records(path: Path):
    """The payloads of a W&B transaction log: a 7-byte header (':W&B', magic, version), then LevelDB log
    records (crc32 4 bytes, length 2, type 1) packed into 32 KiB blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def _items(items) -> dict:
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def read_run(wandb_dir: Path) -> dict:
    """The one offline run under wandb_dir: its run record, config, history rows, summary and artifacts."""
    logs = list(wandb_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1, f"expected one offline run, found {logs}"
    run = {"config": {}, "history": [], "summary": {}, "artifacts": {}, "dir": logs[0].parent}
    for payload in log_records(logs[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["name"], run["project"], run["job_type"] = (record.run.display_name, record.run.project,
                                                            record.run.job_type)
            run["config"].update(_items(record.run.config.update))
        elif kind == "config":
            run["config"].update(_items(record.config.update))
        elif kind == "history":
            run["history"].append(_items(record.history.item))
        elif kind == "summary":
            run["summary"].update(_items(record.summary.update))
        elif kind == "artifact":
            run["artifacts"][record.artifact.name] = {
                "type": record.artifact.type, "files": {e.path: e.digest for e in record.artifact.manifest.contents}}
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


@pytest.fixture(autouse=True)
def wandb_home(tmp_path, monkeypatch):
    """W&B's own caches and artifact staging area in the test's folder, not the developer's home."""
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))


@pytest.fixture
def request_for_ada(settings, tiny_base):
    """A 4-step request on @ada_bytes (the bundled sample archive) and the tiny base model."""
    bot = Mimicbot(settings)
    try:
        bot.fetch_blocking([str(sample_path("ada_bytes"))])
        return asyncio.run(bot.build_request(["ada_bytes"], base_model=tiny_base, seed=3, max_steps=4))
    finally:
        bot.close()


def test_offline_run_records_config_loss_eval_samples_and_artifacts(settings, request_for_ada, monkeypatch):
    monkeypatch.setenv("MIMICBOT_WANDB", "offline")
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    req = request_for_ada

    work_dir = work_dir_for(req.models_dir, 1)  # where the pool trains: beside the models, so publishing is a rename
    work_dir.parent.mkdir(parents=True)
    info = train(req, work_dir, lambda event: None)

    run = read_run(settings.data_dir)
    assert (run["name"], run["project"], run["job_type"]) == ("ada_bytes", "mimicbot", "train")
    assert run["exit_code"] == 0
    # config: the hyperparameters and who, never the posts
    assert run["config"]["lr"] == req.lr and run["config"]["max_steps"] == 4
    assert run["config"]["accounts"][0]["handle"] == "ada_bytes"
    assert "texts" not in run["config"]["accounts"][0]
    # the loss curve, step by step, as the trainer recorded it
    curve = {row["_step"]: row["loss"] for row in run["history"] if "loss" in row}
    assert sorted(curve) == [1, 2, 3, 4]
    assert [round(curve[s], 4) for s in sorted(curve)] == info["losses"]
    # the held-out eval, before and after
    assert run["summary"]["eval/loss_after"] == info["eval"]["loss_after"]
    assert run["summary"]["eval/loss_before"] == info["eval"]["loss_before"]
    assert run["summary"]["steps"] == 4
    # the samples table
    assert run["summary"]["samples/_type"] == "table-file"
    table_file = run["dir"] / "files" / run["summary"]["samples/path"]
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["prompt", "text"]
    assert [row[1] for row in table["data"]] == info["generation"]["samples"]
    assert all(row[0] == "My dream is" for row in table["data"])
    # the dataset and the model as artifacts
    dataset = run["artifacts"][artifact_name("dataset", "ada_bytes")]
    assert dataset["type"] == "dataset" and list(dataset["files"]) == ["x-ada_bytes.txt"]
    model = run["artifacts"][artifact_name("model", "ada_bytes")]
    published = sorted(p.relative_to(info["path"]).as_posix() for p in Path(info["path"]).rglob("*") if p.is_file())
    assert model["type"] == "model" and sorted(model["files"]) == published
    assert {"README.md", "predictions.png", "model.safetensors"} <= set(model["files"])


def test_dataset_artifact_holds_the_recipes_training_text(settings, request_for_ada):
    settings.mimicbot_wandb = "offline"
    tracker = Tracker.for_request(request_for_ada, settings)
    tracker.close()
    files = read_run(settings.data_dir)["artifacts"][artifact_name("dataset", "ada_bytes")]["files"]
    texts = request_for_ada.accounts[0].texts
    recipe_text = ("<|endoftext|>" + "<|endoftext|>".join(texts) + "<|endoftext|>").encode()
    assert files == {"x-ada_bytes.txt": base64.b64encode(hashlib.md5(recipe_text).digest()).decode()}


def test_tracking_off_records_nothing(settings, request_for_ada, monkeypatch, tmp_path):
    monkeypatch.delenv("MIMICBOT_WANDB", raising=False)
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    tracker = Tracker.for_request(request_for_ada)
    assert not tracker.enabled
    tracker.log(1, {"loss": 1.0})
    tracker.finish({"eval": {"loss_after": 1.0}}, tmp_path)
    assert not (settings.data_dir / "wandb").exists()


def test_a_tracking_failure_never_fails_training(settings, request_for_ada, tmp_path, caplog):
    settings.mimicbot_wandb = "offline"
    tracker = Tracker.for_request(request_for_ada, settings)
    with caplog.at_level(logging.WARNING, logger="bot.training.tracking"):
        tracker.finish({"model_id": "ada_bytes", "eval": {"loss_after": 2.5}}, tmp_path / "no-such-model")
    assert not tracker.enabled
    assert any("could not finish the run" in r.getMessage() for r in caplog.records)
    assert read_run(settings.data_dir)["exit_code"] == 1  # the run is closed as failed, not left open


def test_bad_mode_and_missing_wandb_are_clear_errors(monkeypatch):
    with pytest.raises(ConfigError, match="MIMICBOT_WANDB must be one of off, offline, online"):
        Tracker("sometimes")
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'mimicbot\[wandb\]'"):
        Tracker("offline")


def test_metrics_are_only_finite_numbers(settings, request_for_ada):
    settings.mimicbot_wandb = "offline"
    tracker = Tracker.for_request(request_for_ada, settings)
    tracker.log(1, {"loss": 2.0, "phase": "train", "done": True, "eta_s": None, "bad": float("nan")})
    tracker.close()
    rows = [r for r in read_run(settings.data_dir)["history"] if r.get("_step") == 1]
    assert rows and set(rows[0]) - {"_step", "_runtime", "_timestamp"} == {"loss"}


def test_settings_reject_an_unknown_mode():
    with pytest.raises(pydantic.ValidationError, match="mimicbot_wandb"):
        Settings(mimicbot_wandb="sometimes", _env_file=None)


def test_forget_removes_the_accounts_offline_runs_and_the_texts_its_model_posted(settings, request_for_ada,
                                                                                  monkeypatch):
    """W&B runs hold the posts (the dataset artifact): forget removes the runs that name the account. The
    outgoing ledger keeps that its model posted, not what."""
    from bot.posting.ledger import Ledger

    monkeypatch.setenv("MIMICBOT_WANDB", "offline")
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    work_dir = work_dir_for(request_for_ada.models_dir, 1)
    work_dir.parent.mkdir(parents=True)
    train(request_for_ada, work_dir, lambda event: None)
    bot = Mimicbot(settings)
    try:
        run_dir = read_run(settings.data_dir)["dir"]
        entry = Ledger(bot.store).open(model_id="ada_bytes", target="x", text="a generated post", fire_key=None)
        assert bot.forget("ada_bytes", dry_run=True)["wandb_runs"] == [str(run_dir)]
        report = bot.forget("ada_bytes")
        assert report["wandb_runs"] == [str(run_dir)] and report["outgoing_scrubbed"] == 1
        assert not run_dir.exists() and not list(settings.data_dir.glob("wandb/*run-*"))
        assert Ledger(bot.store).get(entry)["text"] == "[forgotten]"
    finally:
        bot.close()
