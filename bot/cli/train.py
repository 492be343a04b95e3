"""`mimicbot train` and `mimicbot jobs`."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..service import RUNNING, TERMINAL, Stop
from . import app, err, friendly, out, print_json, print_table, service, when

jobs_app = typer.Typer(help="Training jobs: queued, running and finished.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

CANCEL_WAIT_S = 10.0  # how long `jobs cancel` waits for another process to stop a running job
EXIT_CANCELLED = 130  # as for a Ctrl-C


@app.command()
@friendly
def train(
    sources: list[str] = typer.Argument(..., help="1 to 3 accounts: a stored handle, or any `mimicbot fetch` "
                                        "SOURCE (fetched first)"),
    base_model: str = typer.Option(None, "--base-model", help="gpt2 (default), any hub causal LM (e.g. "
                                   "HuggingFaceTB/SmolLM2-135M, Qwen/Qwen2.5-0.5B), tiny / tiny-llama / tiny-qwen2 "
                                   "(offline demo models) or a local model folder"),
    epochs: int = typer.Option(None, "--epochs", help="passes over the data (default 4)"),
    lr: float = typer.Option(None, "--lr", help="learning rate (default 1.372e-4; with --lora 3e-3)"),
    lora: bool = typer.Option(False, "--lora", help="train a LoRA adapter (a few MB, served over a shared base) "
                              "instead of the whole model; needs mimicbot[lora]"),
    lora_rank: int = typer.Option(None, "--lora-rank", help="the adapter's rank (default 6); implies --lora"),
    qlora: bool = typer.Option(False, "--qlora", help="QLoRA: train the adapter over the base loaded 4-bit "
                               "(a CUDA GPU only; needs mimicbot[qlora]); implies --lora"),
    block_size: int = typer.Option(None, "--block-size", help="tokens per block (default: the model's context; in fp32 on a CPU, 4 blocks of 256 a step)"),
    batch_size: int = typer.Option(None, "--batch-size", help="blocks per optimizer step (default 1)"),
    dropout: float = typer.Option(None, "--dropout", help="dropout while fine-tuning (default 0; the recipe's 0.1)"),
    seed: int = typer.Option(None, "--seed", help="random seed (default: random, recorded)"),
    max_steps: int = typer.Option(None, "--max-steps", help="stop after this many steps (tests, demos)"),
    queue: bool = typer.Option(False, "--queue", help="only queue the job, for the running daemon to train; "
                               "print its id and return"),
    as_json: bool = typer.Option(False, "--json", help="print the job and the model record as JSON"),
) -> None:
    """Fine-tune a model on up to three accounts' posts; Ctrl-C cancels the job."""
    bot = service()
    stop = Stop()
    try:
        req = asyncio.run(bot.build_request(sources, base_model=base_model, epochs=epochs, lr=lr,
                                            block_size=block_size, batch_size=batch_size, seed=seed, dropout=dropout,
                                            max_steps=max_steps,
                                            lora=(lora or qlora or lora_rank is not None) or None,
                                            lora_rank=lora_rank, qlora=qlora or None))
        if queue:
            _queued(bot.submit(req, requested_by="cli"), as_json)
            return
        with sigint_cancels(stop) as interrupted:
            job = bot.submit(req, requested_by="cli")
            if not as_json:
                err.print(f"job {job['id']}: training [bold]{req.model_id}[/bold] on {req.base_model} "
                          "(Ctrl-C cancels)", highlight=False)
            with progress_view(enabled=not as_json) as on_event:
                final = bot.run_job(job["id"], on_event, stop)
        model = bot.model(final["model_id"]) if final["state"] == "succeeded" else None
    finally:
        bot.close()
    if as_json:  # the training record is the model's; the job carries the rest
        print_json({"job": {k: v for k, v in final.items() if k != "result"}, "model": model})
    elif model:
        out.print(f"model {model['id']} is ready: {model['path']}", highlight=False)
    _exit_unless_succeeded(final, interrupted=interrupted.is_set(),
                           log_path=bot.job_log(final["id"]))


def _queued(job: dict, as_json: bool) -> None:
    if as_json:
        print_json({"job": job})
        return
    out.print(f"job {job['id']}: {job['model_id']} queued; the daemon (`mimicbot run`) trains it. "
              f"Follow it with `mimicbot jobs show {job['id']}`", highlight=False, soft_wrap=True)


def _exit_unless_succeeded(job: dict, interrupted: bool, log_path) -> None:
    if job["state"] == "succeeded":
        return
    if job["state"] == "cancelled":
        err.print(f"job {job['id']} cancelled", highlight=False)
        raise typer.Exit(EXIT_CANCELLED if interrupted else 1)
    err.print(f"[red]error:[/red] job {job['id']} {job['state']}: {job['error']} (log: {log_path})", highlight=False)
    raise typer.Exit(1)


@contextmanager
def sigint_cancels(stop: Stop) -> Iterator[threading.Event]:
    """The first Ctrl-C cancels the job cleanly (child stopped, work removed); a second one interrupts.
    Yields an event that tells whether a Ctrl-C came."""
    previous = signal.getsignal(signal.SIGINT)
    interrupted = threading.Event()

    def on_sigint(signum, frame) -> None:
        interrupted.set()
        stop.set("cancel")
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def progress_view(enabled: bool) -> Iterator:
    """An event sink that drives a progress bar on stderr: phase, steps, loss, tokens/s, ETA."""
    if not enabled:
        yield lambda event: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} tok/s"),
               TextColumn("ETA {task.fields[eta]}"))
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("starting", total=None, loss="-", speed="-", eta="-")

        def on_event(event: dict) -> None:
            if event.get("phase"):
                bar.update(task, description=event["phase"])
            if event.get("type") == "progress" and event.get("step") is not None:
                bar.update(task, completed=event["step"], total=event.get("total"),
                           loss=_fmt(event.get("loss"), "{:.3f}"), speed=_fmt(event.get("tokens_per_s"), "{:,.0f}"),
                           eta=_duration(event.get("eta_s")))

        yield on_event


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


# -- jobs -------------------------------------------------------------------------------------------


@jobs_app.command("list")
@friendly
def jobs_list(
    state: list[str] = typer.Option(None, "--state", help="only jobs in this state: queued, running, succeeded, failed or cancelled (repeatable)"),
    limit: int = typer.Option(50, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The newest jobs first."""
    with service() as bot:
        rows = bot.jobs(tuple(state) if state else None, limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "model", "state", "progress", "loss", "by", "created", "error"],
        [[str(r["id"]), r["model_id"], r["state"], _progress(r), _fmt(r["loss"], "{:.3f}"), r["requested_by"] or "",
          when(r["created_at"]), r["error"] or ""] for r in rows],
        keys=("id", "model", "state", "progress", "loss"))


@jobs_app.command("show")
@friendly
def jobs_show(job_id: int = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """One job: its request, progress, owner and result."""
    with service() as bot:
        job = bot.job(job_id)
    if as_json:
        print_json(job)
        return
    req = job["request"]
    for label, value in (
        ("job", job["id"]), ("model", job["model_id"]), ("state", job["state"]),
        ("accounts", ", ".join(f"@{a['handle']} ({a['network']})" for a in req["accounts"])),
        ("base model", req["base_model"]), ("epochs", req["epochs"]), ("learning rate", req["lr"] if req["lr"] is not None else "default"),
        ("adapter", f"{'QLoRA (4-bit base)' if req.get('qlora') else 'LoRA'}, rank {req.get('lora_rank')}"
         if req.get("lora") else None),
        ("max steps", req["max_steps"]), ("requested by", job["requested_by"]),
        ("created", job["created_at"]), ("started", job["started_at"]), ("finished", job["finished_at"]),
        ("phase", job["phase"]), ("progress", _progress(job)), ("loss", _fmt(job["loss"], "{:.3f}")),
        ("owner", f"pid {job['owner_pid']} on {job['owner_host']}" if job["owner_pid"] else None),
        ("cancel requested", "yes" if job["cancel_requested"] and job["state"] == RUNNING else None),
        ("error", job["error"]), ("log", str(bot.job_log(job["id"]))),
    ):
        if value is not None:
            out.print(f"{label:<18}{value}", highlight=False, soft_wrap=True)


@jobs_app.command("cancel")
@friendly
def jobs_cancel(job_id: int = typer.Argument(...)) -> None:
    """Cancel a queued job, or stop a running one (in this or another process)."""
    with service() as bot:
        job = bot.cancel(job_id)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while job["state"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.2)
            job = bot.job(job_id)
    if job["state"] in TERMINAL:
        out.print(f"job {job_id} {job['state']}", highlight=False)
    else:
        out.print(f"job {job_id}: cancel requested; process {job['owner_pid']} on {job['owner_host']} "
                  "will stop it", highlight=False)


def _progress(job: dict) -> str:
    if job["step"] is None:
        return job["phase"] or ""
    return f"{job['step']}/{job['total']}" if job["total"] else str(job["step"])
