"""`mimicbot models`: the trained models on disk."""

from __future__ import annotations

import typer
from rich.table import Table

from . import app, err, friendly, out, print_json, print_table, service, when

models_app = typer.Typer(help="Trained models: list, show, remove, rewrite the card.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
@friendly
def models_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every model with its accounts, date, size and held-out perplexity."""
    with service() as bot:
        rows = bot.models()
        strays = bot.stray_model_folders()
        models_dir = bot.settings.models_dir
    if strays:
        names = ", ".join(repr(s) for s in strays)
        err.print(f"[yellow]warning:[/yellow] skipped {len(strays)} folder(s) in {models_dir} whose name is not a "
                  f"model id (letters, digits, _ . -): {names}; rename them to use them", highlight=False,
                  soft_wrap=True)
    if as_json:
        print_json(rows)
        return
    if not rows:
        err.print("no models yet: `mimicbot train HANDLE` makes one (`mimicbot demo` shows the whole way)",
                  highlight=False)
        return
    print_table(
        ["id", "name", "accounts", "created", "size", "perplexity"],
        [[r["id"], r["display_name"], "\n".join("@" + h for h in r["accounts"]), when(r["created_at"]),
          f"{r['size_mb']:,.1f} MB", _num(r["perplexity_after"])] for r in rows],
        keys=("id", "accounts"))


@models_app.command("show")
@friendly
def models_show(
    model_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One model: how it was trained, how it scored, where its files are."""
    with service() as bot:
        info = bot.model(model_id)
    if as_json:
        print_json(info)
        return
    out.print(show_table(info))


def show_table(info: dict) -> Table:
    record = info["training"]
    evals = record.get("eval") or {}
    hyper = record.get("hyperparameters") or {}
    table = Table(show_header=False, box=None)
    for label, value in (
        ("model", info["id"]), ("name", info["display_name"]),
        ("accounts", ", ".join("@" + h for h in info["accounts"])),
        ("created", info["created_at"]), ("base model", info.get("base_model") or record.get("base_model")),
        ("adapter", f"LoRA, rank {hyper.get('lora_rank')}"
         + (" (trained over a 4-bit base: QLoRA)" if record.get("quantization") else "")
         if info.get("adapter") == "lora" else None),
        ("steps", record.get("steps")), ("epochs", hyper.get("epochs")), ("learning rate", hyper.get("lr")),
        ("seed", hyper.get("seed")), ("device", record.get("device")), ("precision", record.get("precision")),
        ("train seconds", record.get("train_seconds")),
        ("perplexity", _before_after(evals.get("perplexity_before"), evals.get("perplexity_after"))),
        ("size", f"{info['size_mb']:,.1f} MB"), ("path", info["path"]),
        *((name, path) for name, path in info["files"].items()),
    ):
        if value is not None:
            table.add_row(label, str(value))
    return table


def _before_after(before, after) -> str | None:
    if before is None and after is None:
        return None
    return f"{_num(before)} before training, {_num(after)} after"


def _num(value) -> str:
    return "-" if value is None else f"{value:,.2f}"


@models_app.command("rm")
@friendly
def models_rm(
    model_id: str = typer.Argument(..., metavar="ID"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
) -> None:
    """Delete a model's directory (weights, card, pictures) and its schedules."""
    with service() as bot:
        path = bot.model(model_id)["path"]  # UnknownModel before any question
        if not yes and not typer.confirm(f"delete model {model_id} ({path})?"):
            err.print("kept", highlight=False)
            raise typer.Exit(1)
        schedules = bot.remove_model(model_id)
    out.print(f"deleted model {model_id}", highlight=False)
    if schedules:
        ids = ", ".join(str(s["id"]) for s in schedules)
        out.print(f"removed its {len(schedules)} schedule(s): {ids}", highlight=False)


@models_app.command("card")
@friendly
def models_card(model_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Rewrite the model card (README.md) from training.json and print its path."""
    with service() as bot:
        path = bot.write_card(model_id)
    out.print(str(path), highlight=False, soft_wrap=True)
