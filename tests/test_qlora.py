"""QLoRA (`--qlora`, bot/training/qlora.py): a 4-bit base needs a CUDA GPU and bitsandbytes. This machine has no
GPU: the refusals are what can be tested here — through the real CLI process, the service (before a job is
queued), the request's own validation, and the trainer itself (what a Ray node or a training child runs)."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys

import pytest
import torch

from bot.errors import ConfigError, ValidationError
from bot.samples.generate import sample_path
from bot.service import Mimicbot
from bot.training import qlora
from bot.training.spec import AccountData, TrainRequest, check_hyperparameters
from bot.training.trainer import train

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal on a machine without a CUDA GPU")


def test_the_request_needs_lora_and_not_the_cpu():
    with pytest.raises(ValidationError, match="qlora trains a LoRA adapter over a 4-bit base: set lora too"):
        check_hyperparameters(TrainRequest(model_id="m", accounts=[], models_dir="", qlora=True))
    with pytest.raises(ValidationError, match="qlora loads the base 4-bit on a CUDA GPU; device cpu was asked for"):
        check_hyperparameters(TrainRequest(model_id="m", accounts=[], models_dir="", lora=True, qlora=True,
                                           device="cpu"))
    check_hyperparameters(TrainRequest(model_id="m", accounts=[], models_dir="", lora=True, qlora=True))
    assert TrainRequest.from_dict(TrainRequest(model_id="m", accounts=[], models_dir="", lora=True,
                                               qlora=True).to_dict()).qlora  # crosses a process boundary


@pytest.mark.slow
@NO_GPU
def test_the_cli_refuses_qlora_without_a_gpu_before_queuing(settings, tmp_path):
    env = {**os.environ, "MIMICBOT_DATA_DIR": str(settings.data_dir), "MIMICBOT_MODELS_DIR": str(settings.models_dir)}
    res = subprocess.run([sys.executable, "-m", "bot", "train", str(sample_path("ada_bytes")), "--base-model", "tiny",
                          "--qlora", "--max-steps", "1"], env=env, capture_output=True, text=True, timeout=180,
                         cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "QLoRA (--qlora) loads the base 4-bit with bitsandbytes, which trains on a CUDA GPU only" in res.stderr
    assert "--lora (a full-precision base)" in res.stderr
    if settings.db_path.exists():  # nothing was queued, nothing fetched
        con = sqlite3.connect(settings.db_path)
        try:
            names = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
            assert "jobs" not in names or con.execute("select count(*) from jobs").fetchone()[0] == 0
            assert "posts" not in names or con.execute("select count(*) from posts").fetchone()[0] == 0
        finally:
            con.close()
    assert not (settings.models_dir / "ada_bytes").exists()


@NO_GPU
def test_the_service_refuses_locally_and_leaves_a_ray_node_to_decide(settings):
    bot = Mimicbot(settings)
    try:
        with pytest.raises(ValidationError, match="CUDA GPU only"):
            bot.check_train_options(base_model="tiny", lora=True, qlora=True)
    finally:
        bot.close()
    ray_bot = Mimicbot(settings.model_copy(update={"mimicbot_executor": "ray"}))
    try:  # the cluster's node trains, with its own GPU: the trainer there checks (next test)
        assert ray_bot.check_train_options(base_model="tiny", lora=True, qlora=True)["qlora"] is True
    finally:
        ray_bot.close()


@NO_GPU
def test_the_trainer_refuses_on_the_cpu_before_loading_anything(tmp_path):
    req = TrainRequest(model_id="ada", models_dir=str(tmp_path / "models"), base_model="tiny", lora=True, qlora=True,
                       accounts=[AccountData("ada", "Ada", texts=["a post about compilers"] * 20)])
    events = []
    with pytest.raises(ConfigError, match="CUDA GPU only"):
        train(req, tmp_path / "work", events.append)
    assert events == [] and not (tmp_path / "models").exists()  # not even the tiny base was built


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_a_gpu_without_bitsandbytes_is_told_which_extra():
    with pytest.raises(ConfigError, match=r"needs bitsandbytes.*pip install 'mimicbot\[qlora\]'"):
        qlora.check(torch.device("cuda", 0))
