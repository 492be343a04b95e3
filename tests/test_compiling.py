"""torch.compile in training (bot/training/compiling.py): when a job compiles, and that a job whose compile fails
trains on uncompiled. The compiling tests run the real training child (bot/training/child.py) in a fresh process,
each with an empty inductor cache."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from bot.training.compiling import COMPILE_S, GAIN, MARGIN, SETTING, setting, worth_compiling


def steps_to_pay(lora: bool, step_s: float) -> float:
    return MARGIN * COMPILE_S / (step_s * GAIN["lora" if lora else "full"])


def test_a_long_fp32_job_on_the_cpu_compiles_a_short_one_does_not():
    step_s = 6.0  # a step of the 124M model on 2 cores, fp32
    needed = steps_to_pay(False, step_s)
    assert worth_compiling("cpu", "fp32", False, int(needed) + 1, step_s)[0]
    use, why = worth_compiling("cpu", "fp32", False, int(needed) - 1, step_s)
    assert not use and "too short" in why
    # the tiny model: a 300-step job at 0.03 s a step never pays for compiling
    assert not worth_compiling("cpu", "fp32", False, 300, 0.03)[0]


def test_lora_pays_for_compiling_sooner_than_a_full_fine_tune():
    step_s = 6.0
    between = (steps_to_pay(True, step_s) + steps_to_pay(False, step_s)) / 2
    assert steps_to_pay(True, step_s) < between < steps_to_pay(False, step_s)
    assert worth_compiling("cpu", "fp32", True, int(between), step_s)[0]
    assert not worth_compiling("cpu", "fp32", False, int(between), step_s)[0]


def test_only_fp32_on_the_cpu_is_decided_and_the_setting_overrides(monkeypatch):
    long_job = (10_000, 6.0)
    assert not worth_compiling("cuda", "bf16", False, *long_job)[0]  # not measured on a GPU
    assert not worth_compiling("cuda", "bf16", False, *long_job, mode="on")[0]
    assert not worth_compiling("cpu", "bf16", False, *long_job)[0]  # bf16 autocast: not measured
    assert worth_compiling("cpu", "bf16", False, *long_job, mode="on")[0]
    assert worth_compiling("cpu", "fp32", False, 3, 0.03, mode="on")[0]
    assert not worth_compiling("cpu", "fp32", True, *long_job, mode="off")[0]
    monkeypatch.setenv(SETTING, "OFF")
    assert setting() == "off"
    monkeypatch.setenv(SETTING, "sometimes")
    assert setting() == "auto"
    monkeypatch.delenv(SETTING)
    assert setting() == "auto"


# -- the real thing: a training child that compiles (slow) ----------------------------------------------------------


def run_child(tmp_path: Path, name: str, env: dict, lora: bool = False, **fields) -> tuple[dict, str]:
    """One training job on the tiny model in a fresh child process (the product's own entry point), with `env`
    set for it; returns (the run's record, its log)."""
    import os

    from bot.training.child import child_main
    from bot.training.spec import TrainRequest
    from tests.test_trainer import sample_account

    request = TrainRequest(model_id=f"compile-{name}", accounts=[sample_account("ada_bytes")],
                           models_dir=str(tmp_path / "models"), base_model="tiny", lr=2e-3, seed=7, max_steps=8,
                           precision="fp32", lora=lora, **fields)
    log_path = tmp_path / f"{name}.log"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # a spawned child takes the environment as it is at its start
    try:
        ctx = multiprocessing.get_context("spawn")
        reader, writer = ctx.Pipe(duplex=False)
        child = ctx.Process(target=child_main, args=(request.to_dict(), str(tmp_path / f"work-{name}"), writer,
                                                     str(log_path), 0))
        child.start()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    writer.close()
    last = None
    while True:
        try:
            last = reader.recv()
        except EOFError:
            break
    child.join(60)
    assert last is not None and last["type"] == "done", (last, log_path.read_text()[-3000:])
    return last["result"], log_path.read_text()


@pytest.mark.slow
def test_a_compiled_job_trains_the_same_losses_as_an_uncompiled_one(tmp_path):
    cache = str(tmp_path / "inductor")
    eager, _ = run_child(tmp_path, "eager", {SETTING: "off", "TORCHINDUCTOR_CACHE_DIR": cache})
    compiled, log = run_child(tmp_path, "compiled", {SETTING: "on", "TORCHINDUCTOR_CACHE_DIR": cache})
    assert eager["compiled"] == {"used": False, "reason": f"{SETTING}=off"}
    record = compiled["compiled"]
    assert record["used"] and record["reason"] == f"{SETTING}=on" and record["compile_s"] > 0, record
    assert "compiling the model's 2 blocks" in log
    assert compiled["steps"] == eager["steps"] == 8
    # the same math, fused: the first two steps ran eagerly in both, the other six compiled in one
    assert compiled["losses"][:2] == eager["losses"][:2]
    assert compiled["losses"] == pytest.approx(eager["losses"], abs=2e-3)
    assert compiled["losses"][-1] < compiled["losses"][0]
    saved = json.loads((Path(compiled["path"]) / "training.json").read_text())
    assert saved["compiled"] == record


@pytest.mark.slow
def test_without_a_cpp_compiler_the_job_trains_on_uncompiled(tmp_path):
    result, log = run_child(tmp_path, "nocxx", {SETTING: "on", "CXX": str(tmp_path / "no-such-g++"),
                                                "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}, lora=True)
    record = result["compiled"]
    assert record["used"] is False and record["reason"] == f"{SETTING}=on", record
    assert "Cxx" in record["error"] or "compiler" in record["error"].lower(), record
    assert "compiling for training failed" in log and "training goes on uncompiled" in log
    assert result["steps"] == 8 and len(result["losses"]) == 8
    assert result["eval"]["loss_after"] < result["eval"]["loss_before"]
