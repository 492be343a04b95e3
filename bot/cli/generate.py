"""`mimicbot generate`: new posts in a trained model's voice."""

from __future__ import annotations

import typer

from ..service import DEFAULT_PROMPT
from . import app, err, friendly, out, print_json, service


def quiet_transformers() -> None:
    """No progress bars or one-time library notices between the CLI's own lines."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@app.command()
@friendly
def generate(
    model_id: str = typer.Argument(..., metavar="MODEL", help="a model id (see `mimicbot models list`)"),
    prompt: str = typer.Option(DEFAULT_PROMPT, "--prompt", "-p", help="how each post starts"),
    n: int = typer.Option(5, "-n", help="how many posts"),
    temperature: float = typer.Option(None, "--temperature", help="default: the model's (1.0)"),
    top_p: float = typer.Option(None, "--top-p", help="nucleus sampling; default: the model's (0.95)"),
    top_k: int = typer.Option(None, "--top-k", help="0 = off; default: the model's (50)"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens",
                                        help="budget of new tokens; default: the model's 160 in all, prompt included"),
    seed: int = typer.Option(None, "--seed", help="same seed, same posts"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Generate posts; those that copy a training post are refused and replaced."""
    quiet_transformers()
    with service() as bot:
        result = bot.generate(model_id, prompt, n, temperature=temperature, top_p=top_p, top_k=top_k,
                              max_new_tokens=max_new_tokens, seed=seed)
    if as_json:
        print_json(result.as_dict())
        return
    print_texts(result.texts)
    err.print(f"{len(result.texts)} of {n} in {result.seconds:.2f}s; "
              f"{result.rejected} refused of {result.attempts} drawn", style="dim", highlight=False)
    if len(result.texts) < n:
        err.print(f"[yellow]warning:[/yellow] only {len(result.texts)} new posts within the resampling budget "
                  "(the model mostly repeats its training posts: train longer on more text, or raise --temperature)",
                  highlight=False)


def print_texts(texts: list[str]) -> None:
    for i, text in enumerate(texts, 1):
        out.print(f"{i}. {text}", highlight=False, markup=False, soft_wrap=True)
