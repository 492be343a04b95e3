"""Training on Ray (MIMICBOT_EXECUTOR=ray): the real pool, the real trainer on the tiny model, a real local Ray
instance (2 CPUs, on 127.0.0.1). Jobs keep their API and states; progress streams back; cancel works; the model
lands in the models directory, through a shared folder or uploaded from the node's scratch folder.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from contextlib import aclosing
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.samples.generate import sample_path
from bot.service import Mimicbot
from bot.training import jobs
from bot.training.follow import follow
from bot.training.pool import TrainingPool
from bot.modelfolder import adapter_base
from bot.training.ray_executor import RayExecutor, absolute_base, install_archive, pack_dir, rebase_adapter
from bot.training.spec import TrainRequest
from bot.training.tiny import tiny_dir
from bot.training.supervisor import LocalExecutor, executor_for
from bot.training.supervisor import log_path_for

ray = pytest.importorskip("ray", reason="Ray is the optional `ray` extra: pip install 'mimicbot[ray]' "
                                        "(make test installs it)")

WAIT_S = 180  # a safety net against a hang, never a measure of speed
CPUS = 2


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=CPUS, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def bot(settings):
    b = Mimicbot(settings.model_copy(update={"mimicbot_executor": "ray"}))
    b.fetch_blocking([str(sample_path("ada_bytes")), str(sample_path("grace_gardens"))])
    yield b
    b.close()


async def run_to_end(pool: TrainingPool, job_id: int, stop_when=None) -> list[dict]:
    """The job's events until `stop_when` accepts one, or until it ends."""
    seen = []
    async with asyncio.timeout(WAIT_S), aclosing(follow(pool.store, job_id)) as events:
        async for event in events:
            seen.append(event)
            if stop_when and stop_when(event):
                break
    return seen


TRAINER_PHASES = ("starting", "load", "eval", "train", "eval", "save")


def in_trainer_order(seen: list[str]) -> bool:
    """The phases a follower saw (repeated while a phase lasts, some skipped between two reads) follow the
    trainer's order."""
    distinct = [p for i, p in enumerate(seen) if i == 0 or p != seen[i - 1]]
    rest = iter(TRAINER_PHASES)
    return all(phase in rest for phase in distinct)  # `in` on an iterator consumes it: a subsequence test


def scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mimicbot-ray-*")}


async def test_jobs_train_on_ray_shared_and_uploaded(local_ray, bot, tiny_base):
    """Two jobs at once on the 2-CPU instance: one publishes into the shared models folder, the other trains in
    its node's scratch folder and is uploaded through Ray's object store."""
    upload_settings = bot.settings.model_copy(update={"mimicbot_ray_storage": "upload"})
    shared_pool = TrainingPool(bot.store, bot.settings, workers=1)
    upload_pool = TrainingPool(bot.store, upload_settings, workers=1)
    assert isinstance(shared_pool.executor, RayExecutor) and upload_pool.executor.upload
    scratch_before = scratch_folders()
    hyper = {"base_model": tiny_base, "seed": 1, "max_steps": 3}
    shared_req = await bot.build_request(["ada_bytes"], **hyper)
    upload_req = await bot.build_request(["grace_gardens"], **hyper)
    # the shared pool claims its job before the upload pool starts serving: each claims its own
    shared_job = await asyncio.to_thread(bot.submit, shared_req)
    await shared_pool.start()
    shared_events = asyncio.create_task(run_to_end(shared_pool, shared_job["id"]))
    async with asyncio.timeout(WAIT_S):
        while bot.job(shared_job["id"])["state"] == jobs.QUEUED:
            await asyncio.sleep(0.05)
    upload_job = await asyncio.to_thread(bot.submit, upload_req)
    await upload_pool.start()
    try:
        upload_events = await run_to_end(upload_pool, upload_job["id"])
        shared_events = await shared_events
    finally:
        await shared_pool.close()
        await upload_pool.close()

    runs = ((shared_job, shared_events, "ada_bytes"), (upload_job, upload_events, "grace_gardens"))
    for job, events, model_id in runs:
        final = bot.job(job["id"])
        assert final["state"] == jobs.SUCCEEDED, final["error"]
        # the trainer's events came back and were stored: phases in the trainer's order, progress up to the end
        phases = [e["phase"] for e in events if e["type"] == "progress" and e["phase"]]
        assert phases and in_trainer_order(phases)
        steps = [e["step"] for e in events if e["type"] == "progress" and e["step"]]
        assert steps and steps[-1] == 3 and final["step"] == 3 and final["total"] == 3
        assert events[-1] == jobs.state_event(final)
        # the model is in this host's models folder, and the job's result says so
        model_dir = bot.settings.models_dir / model_id
        assert (model_dir / "config.json").is_file() and (model_dir / "README.md").is_file()
        assert final["result"]["path"] == str(model_dir) and final["result"]["steps"] == 3
        # it ran as a Ray task, not as a local child: no local process, no local job log
        assert final["worker_pid"] is None
        assert not log_path_for(bot.settings.data_dir, job["id"]).exists()
    assert bot.model("grace_gardens")["training"]["model_id"] == "grace_gardens"
    assert scratch_folders() == scratch_before  # the node's scratch folder is gone
    assert not list((bot.settings.models_dir / ".work").iterdir())


async def test_cancel_stops_the_ray_task(local_ray, bot, tiny_base):
    pool = TrainingPool(bot.store, bot.settings, workers=1)
    await pool.start()
    try:
        req = await bot.build_request(["ada_bytes"], base_model=tiny_base, seed=1, epochs=1000)
        job = await pool.submit(req, requested_by="test")
        seen = await run_to_end(pool, job["id"], lambda e: e["type"] == "progress" and (e.get("step") or 0) >= 1)
        assert seen[-1]["type"] == "progress"  # it was training when cancelled
        cancelled = await pool.cancel(job["id"])
    finally:
        await pool.close()
    assert cancelled["state"] == jobs.CANCELLED
    assert not (bot.settings.models_dir / "ada_bytes").exists()
    # the task's worker was killed: its CPU is free again
    async with asyncio.timeout(WAIT_S):
        while ray.available_resources().get("CPU", 0) < CPUS:
            await asyncio.sleep(0.2)


def test_executor_choice(settings):
    assert isinstance(executor_for(settings), LocalExecutor)  # local child processes by default
    assert isinstance(executor_for(settings.model_copy(update={"mimicbot_executor": "ray"})), RayExecutor)


def test_ray_missing_is_a_clear_error(settings, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "ray" else object())
    with pytest.raises(ConfigError, match=r"pip install 'mimicbot\[ray\]'"):
        executor_for(settings.model_copy(update={"mimicbot_executor": "ray"}))


def test_an_archive_round_trip_publishes_atomically(tmp_path):
    model = tmp_path / "node" / "m"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"a": 1}')
    (model / "sub" / "w.bin").write_bytes(bytes(range(256)) * 10)
    final = tmp_path / "models" / "m"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("an older model of that id")
    work = tmp_path / "models" / ".work" / "job-1"
    assert install_archive(pack_dir(model), work, final) == final
    assert (final / "config.json").read_text() == '{"a": 1}'
    assert (final / "sub" / "w.bin").read_bytes() == bytes(range(256)) * 10
    assert not (final / "old.txt").exists() and not work.exists()


async def test_an_uploaded_lora_persona_ships_its_adapter_and_names_a_base_this_host_loads(local_ray, bot):
    """With "upload" storage a LoRA persona comes back as its adapter folder (no base weights). Its base, the tiny
    one, was built in the node's scratch folder, which is gone once the task ends: the installed adapter names this
    host's tiny base instead, and generates over it."""
    pool = TrainingPool(bot.store, bot.settings.model_copy(update={"mimicbot_ray_storage": "upload"}), workers=1)
    await pool.start()
    try:
        req = await bot.build_request(["ada_bytes"], base_model="tiny", lora=True, seed=1, max_steps=2)
        job = await pool.submit(req, requested_by="test")
        await run_to_end(pool, job["id"])
    finally:
        await pool.close()
    final = bot.job(job["id"])
    assert final["state"] == jobs.SUCCEEDED, final["error"]
    folder = bot.settings.models_dir / "ada_bytes"
    files = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "training.json", "README.md"} <= files
    assert not files & {"config.json", "model.safetensors", "pytorch_model.bin"}  # no base weights shipped
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 3 * 2**20
    here = str(tiny_dir(bot.settings.models_dir).resolve())
    assert adapter_base(folder) == here and (Path(here) / "config.json").is_file()
    assert json.loads((folder / "training.json").read_text())["base_model_source"] == here
    shown = bot.model("ada_bytes")
    assert shown["adapter"] == "lora" and shown["base_model"] == here
    result = await bot.agenerate("ada_bytes", n=2, seed=3)  # the persona loads over this host's base and samples
    assert result.attempts >= 2 and result.model_id == "ada_bytes"


def test_rebase_leaves_hub_bases_and_whole_models_alone(tmp_path):
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M"}))
    assert rebase_adapter(adapter, "HuggingFaceTB/SmolLM2-135M", tmp_path / "models") is None
    assert adapter_base(adapter) == "HuggingFaceTB/SmolLM2-135M"
    local = tmp_path / "my-base"
    local.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/node/only/my-base"}))
    assert rebase_adapter(adapter, str(local), tmp_path / "models") == str(local.resolve())
    assert adapter_base(adapter) == str(local.resolve())
    whole = tmp_path / "w"
    whole.mkdir()
    (whole / "config.json").write_text("{}")
    assert rebase_adapter(whole, "tiny", tmp_path / "models") is None and not (tmp_path / "models").exists()


def test_a_relative_local_base_is_sent_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bases" / "mine").mkdir(parents=True)
    req = TrainRequest(model_id="m", accounts=[], models_dir=str(tmp_path / "models"), base_model="bases/mine")
    assert absolute_base(req).base_model == str((tmp_path / "bases" / "mine").resolve())
    for name in ("tiny", "gpt2", str(tmp_path / "bases" / "mine")):  # named the same on every host already
        req.base_model = name
        assert absolute_base(req).base_model == name
