"""One grammar for naming an account: what a person types as a SOURCE (CLI, Discord) → an AccountSpec.

    @jack  jack               an X handle (1-15 letters, digits, _); a stored account of any network by its
                              handle (imported archives and files may have handles of up to 30 characters)
    bsky:alice.bsky.social    a Bluesky handle (a domain name; a leading @ is allowed)
    mastodon:@alice@host      a Mastodon account (the leading @ is optional)
    discord:123456789012345   a Discord user (an id, or a mention <@id>): names a person, not a post source
    discord:GUILD/MEMBER      a Discord member's messages in one server (learned with their consent, never fetched)
    ./archive.zip  posts.txt  a path: anything with a / or \\, a known ending (.zip .js .txt .jsonl), or an
                              existing file that is not a handle. A bare word that is a valid handle stays a
                              handle even when a file or folder of that name exists (`data`, `models`).

Prefixes are case-insensitive; handles are stored lowercase without a leading @. Every refusal is a
ValidationError naming the form that was expected. `open_source`, the service and the Discord converter all
read specs here; the Discord face passes `allow_paths=False` (a Discord user must never make the bot read a
local file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ValidationError

NETWORKS = ("x", "bsky", "mastodon", "discord", "file")
X_HANDLE = re.compile(r"^[a-z0-9_]{1,15}$")
STORED_HANDLE = re.compile(r"^[a-z0-9_]{1,30}$")  # X's 15, or a handle given to an imported file or archive
# atproto's handle syntax (atproto_client.models.string_formats.DOMAIN_RE), at most 253 characters
_DOMAIN = re.compile(r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_MAX_DOMAIN = 253
_ACCT = re.compile(
    r"^@?(?P<user>[a-z0-9_]+(?:[a-z0-9_.-]*[a-z0-9_])?)"
    r"@(?P<instance>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)$"
)
_DISCORD = re.compile(r"^(?:<@!?(\d{15,21})>|(\d{15,21}))$")
_DISCORD_MEMBER = re.compile(r"^(\d{15,21})/(?:<@!?(\d{15,21})>|(\d{15,21}))$")
_HANDLE_TEXT = re.compile(r"^@?[A-Za-z0-9_]{1,30}$")  # a handle as typed
_PATH_ENDINGS = (".zip", ".js", ".txt", ".jsonl")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


@dataclass(frozen=True)
class AccountSpec:
    """A parsed SOURCE. `handle` is as the store keeps it (x: `jack`, bsky: `alice.bsky.social`, mastodon:
    `alice@host`); `account_id` is set for Discord users; `path` for files and archives (network "file"; an
    archive's network becomes "x" once read)."""

    network: str
    handle: str | None = None
    account_id: str | None = None
    path: Path | None = None
    guild_id: str | None = None  # a Discord member's server (discord:GUILD/MEMBER)

    @property
    def spec(self) -> str:
        """The canonical way to write it (what the Discord face hands the service)."""
        if self.path is not None:
            return str(self.path)
        if self.network == "bsky":
            return f"bsky:{self.handle}"
        if self.network == "mastodon":
            return f"mastodon:@{self.handle}"
        if self.network == "discord":
            return f"discord:{self.guild_id}/{self.account_id}" if self.guild_id else f"discord:{self.account_id}"
        return f"@{self.handle}"

    @property
    def fetchable_from_x(self) -> bool:
        return self.network == "x" and bool(self.handle and X_HANDLE.match(self.handle))


def normalise_handle(handle: str) -> str:
    """The recipe's processing: strip, drop a leading @, lowercase."""
    h = handle.strip()
    if h.startswith("@"):
        h = h[1:]
    return h.strip().lower()


def bluesky_handle(text: str) -> str:
    """`@Alice.bsky.social` → `alice.bsky.social`; a ValidationError for anything that is not a handle."""
    handle = normalise_handle(text)
    if len(handle) > _MAX_DOMAIN or not _DOMAIN.match(handle):  # a handle is a domain name
        raise ValidationError(
            f"{_shown(text)!r} is not a Bluesky handle: expected a domain name such as bsky:alice.bsky.social"
        )
    return handle


def parse_acct(text: str) -> tuple[str, str]:
    """`@Alice@Example.social` → ("alice", "example.social"); a ValidationError for anything else."""
    match = _ACCT.match(text.strip().lower())
    if not match:
        raise ValidationError(f"{_shown(text)!r} is not a Mastodon account: expected mastodon:@user@instance, "
                              "e.g. mastodon:@alice@mastodon.social")
    return match["user"], match["instance"]


def file_handle(text: str) -> str:
    """The handle an imported file or archive is stored under (--handle, account.js): 1-30 letters, digits, _."""
    handle = normalise_handle(text)
    if not STORED_HANDLE.match(handle):
        raise ValidationError(f"{_shown(text)!r} is not a handle: use 1-30 letters, digits or _ (e.g. --handle ada)")
    return handle


def looks_like_path(spec: str) -> bool:
    """A path: a separator, a known ending, or an existing file that is not a handle."""
    spec = spec.strip()
    return (
        "/" in spec
        or "\\" in spec
        or spec.lower().endswith(_PATH_ENDINGS)
        or (not _HANDLE_TEXT.match(spec) and Path(spec).exists())
    )


def _shown(text: str, limit: int = 60) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


def parse_spec(spec: str, *, allow_paths: bool = True) -> AccountSpec:
    """What a person typed → an AccountSpec, or a ValidationError saying which form was meant."""
    text = spec.strip()
    if not text:
        raise ValidationError("name an account: @handle, bsky:HANDLE, mastodon:@user@instance or a file")
    prefix, sep, rest = text.partition(":")
    kind = prefix.lower() if sep else ""
    if kind == "bsky":
        return AccountSpec("bsky", bluesky_handle(rest))
    if kind == "mastodon":
        user, instance = parse_acct(rest)
        return AccountSpec("mastodon", f"{user}@{instance}")
    if kind == "discord":
        member = _DISCORD_MEMBER.match(rest.strip())
        if member:
            return AccountSpec("discord", account_id=member.group(2) or member.group(3), guild_id=member.group(1))
        m = _DISCORD.match(rest.strip())
        if not m:
            raise ValidationError(f"{_shown(text)!r} is not a Discord user: expected discord:USER_ID "
                                  "(15-21 digits), discord:<@USER_ID> or discord:GUILD_ID/USER_ID")
        return AccountSpec("discord", account_id=m.group(1) or m.group(2))
    if not allow_paths:
        if _HANDLE_TEXT.match(text):
            return AccountSpec("x", normalise_handle(text))
        raise ValidationError(f"{_shown(text)!r} is not an account handle; use handles like `ada_bytes`, "
                              "bsky:HANDLE or mastodon:@user@instance (archives are imported with `mimicbot fetch`)")
    if _URL.match(text):
        raise ValidationError(f"{_shown(text)!r} is a URL; name the account instead (@handle, bsky:HANDLE, "
                              "mastodon:@user@instance)")
    if looks_like_path(text):
        return AccountSpec("file", path=Path(text))
    if _HANDLE_TEXT.match(text):
        return AccountSpec("x", normalise_handle(text))
    raise ValidationError(
        f"{_shown(text)!r} is neither an X handle (1-15 letters, digits or _), an existing file, "
        "nor bsky:HANDLE / mastodon:@user@instance"
    )


def discord_member_handle(display_name: str, guild_id: int | str, user_id: int | str) -> str:
    """The handle a consenting Discord member's messages are stored under (and their model's id): their display
    name's letters and digits, then six hex digits of a hash of the server and the member — readable in
    /models and on the card, stable for that member in that server, and never their user id."""
    import hashlib

    slug = re.sub(r"[^a-z0-9]+", "_", display_name.lower()).strip("_")[:20].strip("_") or "member"
    digest = hashlib.sha256(f"discord:{guild_id}/{user_id}".encode()).hexdigest()[:6]
    return f"{slug}_{digest}"
