"""`mimicbot demo`: the whole pipeline, offline, in about a minute on a laptop CPU.

Fetch the bundled sample archive (@ada_bytes, synthetic posts) into the configured store, train the
offline `tiny` base model on it through the training pool, generate five posts, and point at the card
and its pictures. The tiny model starts from random weights rather than a pretrained GPT-2, so the demo
trains it for more passes and with a higher learning rate than the recipe's fine-tuning.
"""

from __future__ import annotations

import asyncio
import time

import typer

from ..samples.generate import sample_path
from . import app, err, friendly, out, service
from .fetch import stats_table
from .generate import print_texts, quiet_transformers
from .train import progress_view, sigint_cancels

DEMO_EPOCHS = 20
DEMO_LR = 1e-3


@app.command()
@friendly
def demo(
    epochs: int = typer.Option(DEMO_EPOCHS, "--epochs", help="passes over the sample posts"),
    lr: float = typer.Option(DEMO_LR, "--lr", help="learning rate"),
    max_steps: int = typer.Option(None, "--max-steps", help="stop training after this many steps"),
    seed: int = typer.Option(0, "--seed", help="training and sampling seed"),
) -> None:
    """Fetch the bundled sample archive, train the tiny model on it, generate 5 posts, show the card."""
    run_demo(epochs=epochs, lr=lr, max_steps=max_steps, seed=seed)


def run_demo(epochs: int = DEMO_EPOCHS, lr: float = DEMO_LR, max_steps: int | None = None, seed: int = 0) -> None:
    """The demo itself (also what `mimicbot start` runs when nothing is configured)."""
    from ..service import Stop

    quiet_transformers()
    started = time.perf_counter()
    bot = service()
    stop = Stop()
    try:
        # every option checked before the sample is fetched: a refused demo stores nothing
        bot.check_train_options(base_model="tiny", epochs=epochs, lr=lr, seed=seed, max_steps=max_steps)
        _step("1. fetch", f"the bundled sample archive {sample_path().name}")
        reports = bot.fetch_blocking([str(sample_path())])
        out.print(stats_table([r.as_dict() for r in reports]))
        handle = reports[0].handle

        _step("2. train", f"the offline tiny GPT-2 on @{handle}'s posts ({epochs} epochs, lr {lr})")
        req = asyncio.run(bot.build_request([handle], base_model="tiny", epochs=epochs, lr=lr, seed=seed,
                                            max_steps=max_steps))
        with sigint_cancels(stop):
            job = bot.submit(req, requested_by="cli:demo")
            with progress_view(enabled=True) as on_event:
                final = bot.run_job(job["id"], on_event, stop)
        if final["state"] != "succeeded":
            err.print(f"[red]error:[/red] job {final['id']} {final['state']}: {final['error'] or ''}", highlight=False)
            raise typer.Exit(1)
        evals = (final["result"] or {}).get("eval") or {}
        out.print(f"perplexity on held-out posts: {evals.get('perplexity_before')} before, "
                  f"{evals.get('perplexity_after')} after", highlight=False)

        _step("3. generate", f"5 posts from {req.model_id}")
        result = bot.generate(req.model_id, n=5, seed=seed)
        print_texts(result.texts)
        out.print(f"{result.rejected} of {result.attempts} samples refused (copies of training posts, or posts that "
                  "did not end within the 160-token budget)", style="dim", highlight=False)

        _step("4. files", "the model card and its pictures")
        files = bot.model(req.model_id)["files"]
        for name in ("card", "predictions", "loss"):
            if name in files:
                out.print(f"{name:12} {files[name]}", highlight=False, soft_wrap=True)
    finally:
        bot.close()
    out.print(f"done in {time.perf_counter() - started:.1f}s", highlight=False)


def _step(title: str, what: str) -> None:
    out.print(f"\n[bold]{title}[/bold] {what}", highlight=False)
