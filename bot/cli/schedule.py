"""`mimicbot schedule …` (edit the schedules the daemon serves), `mimicbot post` (post once, now) and
`mimicbot outgoing …` (the outgoing ledger: what was sent, what is unknown).

The daemon notices schedule edits within MIMICBOT_SCHEDULE_POLL_SECONDS; no restart. `mimicbot post … --to
discord:CHANNEL_ID` talks to Discord's REST API with DISCORD_TOKEN (discord.py's HTTP client, no gateway), so it
works while the daemon runs or not.
"""

from __future__ import annotations

import asyncio

import typer

from . import app, err, friendly, out, print_json, print_table, service, when

schedule_app = typer.Typer(help="Schedules: when each model posts where.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
outgoing_app = typer.Typer(help="The outgoing ledger: every post sent, refused or in doubt.", no_args_is_help=True)
app.add_typer(outgoing_app, name="outgoing")

TARGETS_HELP = "where to post: x, bsky, mastodon or discord:CHANNEL_ID"
SCHEDULE_COLUMNS = ("id", "model_id", "target", "when", "prompt", "require_approval", "paused", "next_fire",
                    "last_fire_at", "last_status", "last_error", "missing_credentials")


def _show_schedule(row: dict, verb: str) -> None:
    out.print(f"schedule {row['id']} {verb}: {row['model_id']} → {row['target']}", highlight=False)
    if row.get("missing_credentials"):
        out.print(f"[yellow]warning:[/] nothing will be posted to {row['target']} until "
                  f"{', '.join(row['missing_credentials'])} are set (in the environment or .env)", highlight=False)


@schedule_app.command("add")
@friendly
def schedule_add(
    model_id: str = typer.Argument(..., metavar="MODEL"),
    to: str = typer.Option(..., "--to", metavar="TARGET", help=TARGETS_HELP),
    cron: str = typer.Option(None, "--cron", help="5-field crontab, e.g. '0 9 * * mon-fri'"),
    every: str = typer.Option(None, "--every", help="an interval, e.g. 90m, 2h, 1h30m (at least 1m)"),
    tz: str = typer.Option(None, "--tz", help="IANA time zone of --cron (default MIMICBOT_SCHEDULE_TIMEZONE); not with --every"),
    approval: bool = typer.Option(False, "--approval", help="drafts wait for Approve in Discord"),
    approval_channel: int = typer.Option(None, "--approval-channel", help="Discord channel id for the drafts (with --approval)"),
    prompt: str = typer.Option(None, "--prompt", "-p",
                               help="how each post starts (default: none, the model writes the whole post)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a schedule (exactly one of --cron and --every)."""
    with service() as bot:
        row = bot.add_schedule(model_id, to, cron=cron, every=every, timezone=tz, require_approval=approval,
                               approval_channel_id=approval_channel, prompt=prompt)
    if as_json:
        print_json(row)
    else:
        _show_schedule(row, "added")


@schedule_app.command("list")
@friendly
def schedule_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every schedule with its next fire time and last result."""
    with service() as bot:
        rows = bot.list_schedules()
    if as_json:
        print_json([{k: r[k] for k in SCHEDULE_COLUMNS} for r in rows])
        return
    print_table(
        ["id", "model", "to", "when", "approval", "state", "next", "last"],
        [[str(r["id"]), r["model_id"], r["target"], r["when"], "yes" if r["require_approval"] else "",
          ("paused" if r["paused"] else "active") + (", needs keys" if r["missing_credentials"] else ""),
          when(r["next_fire"]),
          f"{r['last_status'] or ''} {r['last_error'] or ''}".strip()] for r in rows],
        keys=("id", "model", "to", "state"))


@schedule_app.command("rm")
@friendly
def schedule_rm(schedule_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Delete a schedule."""
    with service() as bot:
        _show_schedule(bot.remove_schedule(schedule_id), "removed")


@schedule_app.command("pause")
@friendly
def schedule_pause(schedule_id: int = typer.Argument(..., metavar="ID")) -> None:
    with service() as bot:
        _show_schedule(bot.pause_schedule(schedule_id), "paused")


@schedule_app.command("resume")
@friendly
def schedule_resume(schedule_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Resume; fire times missed while paused are not made up."""
    with service() as bot:
        _show_schedule(bot.resume_schedule(schedule_id), "resumed")


@schedule_app.command("run-now")
@friendly
def schedule_run_now(schedule_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Ask the running daemon to fire the schedule once, now."""
    with service() as bot:
        row = bot.run_schedule_now(schedule_id)
        poll = bot.settings.mimicbot_schedule_poll_seconds
    _show_schedule(row, "queued to run now")
    err.print(f"the running daemon fires it within {poll:g} seconds (MIMICBOT_SCHEDULE_POLL_SECONDS); if no daemon "
              "runs, it fires when one starts", style="dim", highlight=False)


@app.command()
@friendly
def post(
    model_id: str = typer.Argument(..., metavar="MODEL"),
    to: str = typer.Option(..., "--to", metavar="TARGET", help=TARGETS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="generate and guard, print, send nothing"),
    cw: str = typer.Option(None, "--cw", metavar="TEXT",
                           help="Mastodon only: the post's content warning (default: MIMICBOT_MASTODON_CW)"),
    prompt: str = typer.Option(None, "--prompt", "-p",
                               help="how the post starts (default: none, the model writes the whole post)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Post once, now: generate in the model's voice, pass the guards, send, record in the ledger."""
    from .generate import quiet_transformers

    quiet_transformers()
    with service() as bot:
        outcome = asyncio.run(bot.post(model_id, to, dry_run=dry_run, prompt=prompt, content_warning=cw))
    if as_json:
        print_json(outcome.as_dict())
    else:
        out.print(f"{outcome.status}: {outcome.text or ''}", highlight=False, markup=False, soft_wrap=True)
        if outcome.remote_id:
            out.print(f"{outcome.target} id {outcome.remote_id} (ledger entry {outcome.entry_id})", highlight=False)
        if outcome.error:
            err.print(f"[yellow]{outcome.status}:[/yellow] {outcome.error}", highlight=False)
    if outcome.status in ("rejected", "failed", "unknown"):
        raise typer.Exit(1)


@outgoing_app.command("list")
@friendly
def outgoing_list(
    status: str = typer.Option(None, "--status", help="draft, rejected, sending, sent, failed or unknown"),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The latest outgoing posts, newest first."""
    with service() as bot:
        rows = bot.outgoing(status, limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        ["id", "status", "to", "model", "text", "remote id", "when", "error"],
        [[str(r["id"]), r["status"], r["target"], r["model_id"], r["text"], r["remote_id"] or "",
          when(r["sent_at"] or r["created_at"]), r["error"] or ""] for r in rows],
        keys=("id", "status", "to", "model"))


@outgoing_app.command("resolve")
@friendly
def outgoing_resolve(
    entry_id: int = typer.Argument(..., metavar="ID"),
    remote_id: str = typer.Option(None, "--remote-id", help="the post's id, found on the network"),
    not_posted: bool = typer.Option(False, "--not-posted", help="it is not on the network"),
) -> None:
    """Settle an "unknown" post after checking the network by hand."""
    if bool(remote_id) == not_posted:
        err.print("[red]error:[/red] give exactly one of --remote-id and --not-posted", highlight=False)
        raise typer.Exit(2)
    with service() as bot:
        row = bot.resolve_outgoing(entry_id, remote_id)
    out.print(f"outgoing post {row['id']} is now {row['status']}", highlight=False)
