"""`mimicbot run` (the daemon: bot/app.py), `mimicbot start` (`make run`: the daemon when anything is configured,
otherwise the offline demo) and `mimicbot discord sync`."""

from __future__ import annotations

import asyncio

import typer

from ..config import load_settings
from . import app, err, friendly, out

discord_app = typer.Typer(help="The Discord bot.", no_args_is_help=True)
app.add_typer(discord_app, name="discord")


@app.command()
@friendly
def run() -> None:
    """Run the daemon until Ctrl-C / SIGTERM: the training pool, the model cache, the schedules, X replies (with
    MIMICBOT_REPLY_MODEL) and the Discord bot (with DISCORD_TOKEN). It prints which parts run and why the
    others do not. Logs go to DATA_DIR/logs/mimicbot.log."""
    _run_daemon()


def _run_daemon() -> None:
    from ..app import run_daemon
    from ..ops import log_file_for  # the CLI set up logging: stderr + this rotating file, secrets redacted

    settings = load_settings()
    out.print(f"mimicbot: starting the daemon (log: {log_file_for(settings)}); Ctrl-C stops it", highlight=False,
              soft_wrap=True)
    asyncio.run(run_daemon(settings, on_plan=_print_plan))
    out.print("mimicbot: stopped", highlight=False)


def _print_plan(parts) -> None:
    width = max(len(p.name) for p in parts)
    for part in parts:
        state = "on " if part.on else "off"
        out.print(f"  {part.name:<{width}}  {state}  {part.why}", highlight=False, markup=False, soft_wrap=True)


@app.command()
@friendly
def start() -> None:
    """`make run`: the daemon when a network credential, MIMICBOT_REPLY_MODEL or a schedule is configured,
    otherwise the offline demo."""
    from ..app import daemon_reason, stored_schedules

    settings = load_settings()
    reason = daemon_reason(settings, stored_schedules(settings))
    if reason:
        out.print(f"mimicbot: {reason}: running the daemon", highlight=False)
        _run_daemon()
        return
    from .demo import run_demo

    err.print("Nothing is configured (no network credentials, reply model or schedules): running the offline "
              "demo. The README's 'Run and operate' section says what to set to run the daemon.", highlight=False)
    run_demo()


@discord_app.command("sync")
@friendly
def sync(guild: int = typer.Option(None, "--guild", help="sync to this server id only (instant, for testing)")
         ) -> None:
    """Sync the slash commands with Discord. Run it after changing commands; global changes may take up to
    an hour to show, a --guild sync is immediate."""
    from ..discord.face import sync_commands
    from ..discord.options import load_options

    names = asyncio.run(sync_commands(load_settings(), load_options(), guild))
    where = f"server {guild}" if guild else "all servers"
    out.print(f"synced {len(names)} slash commands to {where}: {', '.join(sorted(names))}", highlight=False)
