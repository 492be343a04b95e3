"""`mimicbot health`, `mimicbot db backup PATH` and `mimicbot models push MODEL --repo OWNER/NAME`."""

from __future__ import annotations

import typer

from . import app, err, friendly, out, print_json, service


def group(name: str, help: str) -> typer.Typer:
    """The command group `name`, shared with any module that registered it first (e.g. `models`)."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


db_app = group("db", "The SQLite database.")
models_app = group("models", "Trained models.")


def _settings():
    from ..config import load_settings

    return load_settings()


@app.command()
@friendly
def health(as_json: bool = typer.Option(False, "--json", help="print the checks as JSON")) -> None:
    """Is the daemon healthy? Database reachable, heartbeat fresh, Discord connected, pool alive.
    Exit code 0 when every check passes, 1 otherwise (Docker's healthcheck)."""
    from ..ops import check_health

    checks = check_health(_settings())
    healthy = all(c.ok for c in checks)
    if as_json:
        print_json({"healthy": healthy, "checks": [c.as_dict() for c in checks]})
    else:
        for c in checks:
            line = f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}"
            (out if c.ok else err).print(line, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(0 if healthy else 1)


@db_app.command("backup")
@friendly
def db_backup(path: str = typer.Argument(..., metavar="PATH", help="the backup file; or a folder (one that exists, "
                                          "or any PATH ending in /, created) to write mimicbot-<time>.db into")
              ) -> None:
    """Copy the live database (online: the daemon keeps running) to PATH, atomically."""
    from ..ops import backup_database

    settings = _settings()
    written = backup_database(settings.db_path, path)
    out.print(f"backed up {settings.db_path} to {written} ({written.stat().st_size:,} bytes)", highlight=False,
              soft_wrap=True)


@models_app.command("push")
@friendly
def models_push(
    model: str = typer.Argument(..., help="model id (see `mimicbot models list`)"),
    repo: str = typer.Option(..., "--repo", help="hub repository OWNER/NAME; created if it does not exist"),
    private: bool = typer.Option(False, "--private", help="create the repository private"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Upload a model, its card and pictures to the Hugging Face hub (token: HF_TOKEN)."""
    with service() as bot:
        result = bot.push_model(model, repo, private=private)
    if as_json:
        print_json(result.as_dict())
        return
    out.print(f"pushed {model} to {result.url} ({len(result.files)} files)", highlight=False, soft_wrap=True)
    out.print(result.commit_url, highlight=False, soft_wrap=True)
