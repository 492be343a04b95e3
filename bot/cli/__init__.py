"""The admin CLI: `mimicbot COMMAND`. A thin face over bot.service.Mimicbot; each command group lives in
its own module and registers itself on `app`.

Errors a person can fix (MimicbotError) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from functools import wraps

import typer
from typer.models import OptionInfo, ParameterInfo
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from ..errors import MimicbotError
from ..redaction import redact, redact_output

app = typer.Typer(
    name="mimicbot",
    help="Learn to write like a person from their posts, then post in that voice.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def print_table(headers: list[str], rows: list[list[str]], keys: tuple[str, ...]) -> None:
    """A table whose `keys` columns — the ids and handles a person types, and short values such as counts — never
    wrap or truncate: each is as wide as its longest line. The other columns give way, the widest first, down to
    their header's width (their values folded, nothing cut). Several handles in one cell go one a line. When even
    that does not fit the terminal, the table is printed wider than it (the terminal wraps the lines) rather than
    cut an id."""
    natural = [max(cell_len(line) for cell in [h, *(r[i] for r in rows)] for line in (cell.splitlines() or [""]))
               for i, h in enumerate(headers)]
    floor = [natural[i] if h in keys else min(natural[i], cell_len(h)) for i, h in enumerate(headers)]
    widths = list(natural)
    budget = out.width - (3 * len(headers) - 1)  # padding and rules between cells (no outer edge)
    while sum(widths) > budget:
        shrinkable = [i for i, w in enumerate(widths) if w > floor[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
    table = Table(*[Column(h, width=w, no_wrap=h in keys, overflow="fold") for h, w in zip(headers, widths)],
                  show_edge=False)
    for row in rows:
        table.add_row(*row)
    need = sum(widths) + 3 * len(headers) - 1
    if need <= out.width:
        out.print(table)
    else:
        Console(file=out.file, width=need, color_system=out.color_system, force_terminal=out.is_terminal,
                highlight=False).print(table)


def when(iso: str | None) -> str:
    """An ISO time as a table shows it: `2026-12-02 01:59` (UTC, as stored); JSON output keeps the full value."""
    return (iso or "")[:16].replace("T", " ")


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
            err.print(f"[red]error:[/red] {escape(redact(str(e)))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def service():
    from ..service import Mimicbot

    return Mimicbot()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"mimicbot {version('mimicbot')}", highlight=False)
        raise typer.Exit(0)


@app.callback()
@friendly
def _root(
    log_level: str = typer.Option("WARNING", "--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    from ..ops import setup_logging  # stderr + rotating JSON lines in <data dir>/logs, secrets redacted

    setup_logging(log_level)


def _register() -> None:
    from . import demo, fetch, generate, models, ops, run, schedule, train  # noqa: F401  (each adds its commands)

    _placeholders(app)


def _placeholders(typer_app: typer.Typer) -> None:
    """One style of placeholder in every command's help: a value is an UPPERCASE word (`--epochs EPOCHS`,
    `MODEL`, `SOURCES`), a flag shows none (typer would print a type tag such as `<bool>` or `<int>`, and an
    argument's lowercase parameter name). Explicit metavars are kept."""
    callbacks = [c.callback for c in typer_app.registered_commands]
    if typer_app.registered_callback is not None:
        callbacks.append(typer_app.registered_callback.callback)
    for fn in filter(None, callbacks):
        for name, param in inspect.signature(fn).parameters.items():
            info = param.default
            if not isinstance(info, ParameterInfo) or info.metavar is not None:
                continue
            flag = isinstance(info, OptionInfo) and param.annotation in (bool, "bool")
            info.metavar = "" if flag else name.upper()
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _placeholders(group.typer_instance)


def main() -> None:
    redact_output()  # whatever the CLI prints (a traceback included) passes through the redactor
    _register()
    app()
