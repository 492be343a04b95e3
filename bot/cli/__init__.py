"""The admin CLI: `mimicbot COMMAND`. A thin face over bot.service.Mimicbot; each command group lives in
its own module and registers itself on `app`.

Errors a person can fix (MimicbotError) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import MimicbotError

app = typer.Typer(
    name="mimicbot",
    help="Learn to write like a person from their posts, then post in that voice.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def friendly(fn: Callable) -> Callable:
    """Turn a MimicbotError into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MimicbotError as e:
            # the message may quote what was typed: `[/x]` is a name, not markup for the console
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def service():
    from ..service import Mimicbot

    return Mimicbot()


@app.callback()
@friendly
def _root(log_level: str = typer.Option("WARNING", "--log-level", help="DEBUG, INFO, WARNING or ERROR")) -> None:
    from ..ops import setup_logging  # stderr + rotating JSON lines in <data dir>/logs, secrets redacted

    setup_logging(log_level)


def _register() -> None:
    from . import demo, fetch, generate, models, ops, run, schedule, train  # noqa: F401  (each adds its commands)


def main() -> None:
    _register()
    app()
