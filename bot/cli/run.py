"""`mimicbot run` (the Discord daemon), `mimicbot start` (`make run`: the daemon when DISCORD_TOKEN is set,
otherwise the offline demo) and `mimicbot discord sync`."""

from __future__ import annotations

import asyncio

import typer

from ..config import load_settings
from ..errors import ConfigError
from . import app, err, friendly, out

discord_app = typer.Typer(help="The Discord bot.", no_args_is_help=True)
app.add_typer(discord_app, name="discord")


@app.command()
@friendly
def run() -> None:
    """Run the Discord bot, the training pool and the model cache in this process until Ctrl-C / SIGTERM.

    Needs DISCORD_TOKEN (README: "The Discord bot"). Logs go to DATA_DIR/logs/mimicbot.log."""
    from ..discord.options import load_options
    from ..discord.runner import require_token, serve
    from ..ops import log_file_for  # the CLI set up logging: stderr + this rotating file, secrets redacted

    settings = load_settings()
    require_token(settings)  # fail before anything else starts
    out.print(f"mimicbot: starting the Discord bot (log: {log_file_for(settings)}); Ctrl-C stops it", highlight=False)
    asyncio.run(serve(settings, load_options()))
    out.print("mimicbot: stopped", highlight=False)


@app.command()
@friendly
def start(ctx: typer.Context) -> None:
    """`make run`: the Discord bot when DISCORD_TOKEN is set, otherwise the offline demo."""
    if load_settings().secret("discord_token"):
        run()
        return
    group = ctx.parent.command if ctx.parent else None
    demo = group.get_command(ctx.parent, "demo") if group else None
    if demo is None:
        raise ConfigError("DISCORD_TOKEN is not set and this install has no `mimicbot demo`")
    err.print("DISCORD_TOKEN is not set: running the offline demo instead (the README's section 'The Discord bot' sets it up)",
              highlight=False)
    ctx.parent.invoke(demo)


@discord_app.command("sync")
@friendly
def sync(guild: int = typer.Option(None, "--guild", help="sync to this server id only (instant, for testing)")
         ) -> None:
    """Sync the slash commands with Discord. Run it after changing commands; global changes may take up to
    an hour to show, a --guild sync is immediate."""
    from ..discord.options import load_options
    from ..discord.runner import sync_commands

    names = asyncio.run(sync_commands(load_settings(), load_options(), guild))
    where = f"server {guild}" if guild else "all servers"
    out.print(f"synced {len(names)} slash commands to {where}: {', '.join(sorted(names))}", highlight=False)
