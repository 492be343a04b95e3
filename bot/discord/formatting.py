"""Text and embeds the bot shows: pure functions of plain data, so each is easy to read and to test.

Everything that may carry text the bot did not write (generated posts, handles, display names) goes through
`neutralise` first. The bot also sends every message with `AllowedMentions.none()`, so nothing can ping
even if a mention slipped through; neutralising keeps the text from *looking* like a ping as well.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import discord

from ..service import STATS_ROWS

ZWSP = "\u200b"
BOT_COLOUR = discord.Colour(0x1D9BF0)  # the blue of a post
OK_COLOUR = discord.Colour.green()
FAIL_COLOUR = discord.Colour.red()
GREY = discord.Colour.light_grey()

_AT = re.compile(r"@(?!\u200b)")
# control characters but line breaks and tabs, direction overrides and isolates (which make text show in another
# order than it reads: "\u202egnp.exe" shows as "exe.png"), half surrogate pairs (not text: Discord refuses them)
_UNSHOWABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def neutralise(text: str) -> str:
    """Make text the bot did not write inert: a zero-width space after each `@` (so `@everyone`, `@here`,
    `<@123>`, `<@&123>` and `@handle` all stay visible but are no longer mentions), and no control character,
    direction override or half surrogate pair. Idempotent."""
    return _AT.sub("@" + ZWSP, _UNSHOWABLE.sub("", text))


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def duration(seconds: float | None) -> str:
    """A short human duration: `42 s`, `3 min 05 s`, `1 h 02 min`; `?` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_bar(step: int | None, total: int | None, width: int = 20) -> str:
    """`▰▰▰▰▱▱▱▱ 50 %`: a bar of `width` cells and the percentage."""
    if not total or step is None:
        return "▱" * width
    frac = min(1.0, max(0.0, step / total))
    full = int(frac * width)
    return "▰" * full + "▱" * (width - full) + f" {frac * 100:.0f} %"


# -- models ---------------------------------------------------------------------------------------


def model_title(info: dict) -> str:
    """The card's header: `🤖 AI CYBORG 🤖 A & B` for several accounts, `Name 🤖 AI Bot` for one."""
    name = neutralise(info.get("display_name") or info.get("model_id") or "?")
    if len(info.get("accounts") or []) > 1 or str(info.get("kind", "")).upper() == "CYBORG":
        return f"🤖 AI CYBORG 🤖 {name}"
    return f"{name} 🤖 AI Bot"


def perplexity_line(info: dict) -> str | None:
    """`983.5 → 95.1`: held-out perplexity before and after training, from training.json's eval."""
    ev = info.get("eval") or {}
    before, after = ev.get("perplexity_before"), ev.get("perplexity_after")
    if before is None and after is None:
        return None
    return f"{_num(before)} → {_num(after)}"


def _num(x) -> str:
    return "?" if x is None else f"{x:,.1f}"


def add_data_table(embed: discord.Embed, accounts: list[dict]) -> discord.Embed:
    """The card's data table, one inline field (a column) per account."""
    for a in accounts:
        stats = a.get("stats") or {}
        rows = "\n".join(f"{label}: **{stats.get(key, 0):,}**" for label, key in STATS_ROWS)
        name = neutralise(f"{a.get('display_name') or a['handle']} (@{a['handle']})")
        embed.add_field(name=clip(name, 256), value=rows, inline=True)
    return embed


def model_embed(model: dict, *, title_prefix: str = "", description: str = "",
                colour: discord.Colour = BOT_COLOUR) -> tuple[discord.Embed, discord.File | None]:
    """A model as its card shows it: the header, the data table, held-out perplexity and the predictions
    picture (attached). `model` is `Mimicbot.model(id)`: its id, training.json and folder."""
    training = model.get("training") or {}
    info = {"model_id": model["id"], "display_name": model.get("display_name"), **training}
    embed = discord.Embed(title=clip(title_prefix + model_title(info), 256), description=description, colour=colour)
    add_data_table(embed, training.get("accounts") or [])
    ppl = perplexity_line(info)
    if ppl:
        embed.add_field(name="Held-out perplexity (before → after)", value=ppl, inline=False)
    picture = (model.get("files") or {}).get("predictions")
    if picture is None or not Path(picture).is_file():
        return embed, None
    embed.set_image(url=f"attachment://{Path(picture).name}")
    return embed, discord.File(picture, filename=Path(picture).name)


def post_embed(text: str, info: dict, *, footer: str | None = None) -> discord.Embed:
    """A generated post, drawn like a post: avatar, name, handle, text."""
    accounts = info.get("accounts") or []
    first = accounts[0] if accounts else {}
    handle = info.get("model_id", "?") if len(accounts) != 1 else first.get("handle", "?")
    author = f"{info.get('display_name') or handle} 🤖 (@{handle})"
    embed = discord.Embed(description=clip(neutralise(text), 4000) or "…", colour=BOT_COLOUR)
    embed.set_author(name=clip(neutralise(author), 256), icon_url=_avatar(first))
    if footer:
        embed.set_footer(text=clip(neutralise(footer), 2048))
    return embed


def _avatar(account: dict) -> str | None:
    url = account.get("avatar_url")
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


# -- jobs -----------------------------------------------------------------------------------------

STATE_ICONS = {"queued": "⏳", "running": "🏋️", "succeeded": "✅", "failed": "❌", "cancelled": "🚫"}


def job_line(job: dict) -> str:
    """One job in a list: `#12 ✅ ada_bytes — succeeded`, with progress when running."""
    icon = STATE_ICONS.get(job["state"], "•")
    line = f"`#{job['id']}` {icon} **{neutralise(job['model_id'])}** — {job['state']}"
    if job["state"] == "running" and job.get("total"):
        line += f" ({job.get('step') or 0:,}/{job['total']:,} steps, ETA {duration(job.get('eta_s'))})"
    if job["state"] == "failed" and job.get("error"):
        line += f": {clip(neutralise(job['error']), 200)}"
    return line


def status_embed(job: dict, progress: dict | None = None) -> discord.Embed:
    """The message a training job keeps editing: state, progress bar, step, loss, speed and ETA."""
    state = job["state"]
    colour = {"succeeded": OK_COLOUR, "failed": FAIL_COLOUR, "cancelled": GREY}.get(state, BOT_COLOUR)
    embed = discord.Embed(title=f"Training {neutralise(job['model_id'])} — job #{job['id']}", colour=colour)
    p = progress or job
    if state == "queued":
        embed.description = "⏳ Queued; training starts when a worker is free."
    elif state == "running":
        if p.get("total"):
            embed.description = progress_bar(p.get("step"), p.get("total"))
            embed.add_field(name="Step", value=f"{p.get('step') or 0:,} / {p['total']:,}")
            if p.get("loss") is not None:
                embed.add_field(name="Loss", value=f"{p['loss']:.3f}")
            embed.add_field(name="ETA", value=duration(p.get("eta_s")))
            if p.get("tokens_per_s"):
                embed.set_footer(text=f"{p['tokens_per_s']:,.0f} tokens/s")
        else:
            embed.description = f"🏋️ {p.get('phase') or 'starting'}…"
    elif state == "succeeded":
        embed.description = "✅ Done."
    elif state == "failed":
        embed.description = f"❌ Failed: {clip(neutralise(job.get('error') or 'unknown error'), 1000)}"
    else:
        embed.description = "🚫 Cancelled."
    return embed
