"""`mimicbot fetch`, `mimicbot accounts` and `mimicbot forget`."""

from __future__ import annotations

import typer
from rich.table import Table

from ..service import STATS_ROWS
from . import app, err, friendly, out, print_json, print_table, service, when

accounts_app = typer.Typer(help="Accounts whose posts are stored.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")


def stats_table(reports: list[dict]) -> Table:
    """The model card's table: one column per account."""
    table = Table("Data", *[r["display_name"] or r["handle"] for r in reports])
    for label, key in STATS_ROWS:
        table.add_row(label, *[f"{r[key]:,}" for r in reports])
    return table


@app.command()
@friendly
def fetch(
    sources: list[str] = typer.Argument(..., help="@handle or handle (X API), an X archive (.zip, folder, tweets.js), "
                                        "a .txt or .jsonl file, bsky:HANDLE, mastodon:@user@instance"),
    handle: str = typer.Option(None, "--handle", help="whose posts a .txt/.jsonl file (or an archive without account.js) holds: 1-30 letters, digits or _"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list instead of the table"),
) -> None:
    """Collect and clean posts into the database; prints the model card's data table."""
    with service() as bot:
        reports = [r.as_dict() for r in bot.fetch_blocking(sources, handle)]
    if as_json:
        print_json([{k: r[k] for k in ("handle", "display_name", "source", "downloaded", "retweets", "short",
                                        "kept", "chars", "new")} for r in reports])
        return
    out.print(stats_table(reports))
    for r in reports:
        out.print(f"@{r['handle']}: {r['new']:,} new, {r['chars']:,} characters kept", highlight=False)
        if r["warning"]:
            err.print(f"[yellow]warning:[/yellow] @{r['handle']}: {r['warning']}", highlight=False)


@accounts_app.command("list")
@friendly
def accounts_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every stored account with its post counts."""
    with service() as bot:
        rows = bot.accounts()
    if as_json:
        print_json([{k: r[k] for k in ("network", "handle", "display_name", "downloaded", "retweets", "short",
                                        "kept", "since_id", "updated_at")} for r in rows])
        return
    print_table(
        ["network", "handle", "name", "downloaded", "retweets", "short", "kept", "updated"],
        [[r["network"], "@" + r["handle"], r["display_name"] or "", f"{r['downloaded']:,}", f"{r['retweets']:,}",
          f"{r['short']:,}", f"{r['kept']:,}", when(r["updated_at"])] for r in rows],
        keys=("network", "handle", "downloaded", "retweets", "short", "kept"))


@app.command()
@friendly
def forget(
    handle: str = typer.Argument(..., help="the account's handle, on any network (e.g. ada_bytes)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only say what would be deleted"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Delete everything stored about an account: posts, models trained on them, its training jobs (running
    ones are cancelled and waited for), the texts those models posted, and its W&B runs."""
    with service() as bot:
        plan = bot.forget(handle, dry_run=True)  # UnknownAccount before any question
        if not dry_run and not yes and not typer.confirm(f"delete {_forget_line(plan)}? This cannot be undone"):
            err.print("kept", highlight=False)
            raise typer.Exit(1)
        report = plan if dry_run else bot.forget(handle)
    if as_json:
        print_json(report)
    else:
        out.print(("would delete " if dry_run else "deleted ") + _forget_line(report), highlight=False)


def _forget_line(report: dict) -> str:
    models = ", ".join(report["models"]) or "none"
    return (f"@{report['handle']}: {report['posts']:,} posts from {report['accounts']} account(s), models: {models}, "
            f"{len(report['jobs'])} training job(s), {len(report['wandb_runs'])} W&B run(s)")
