"""Where posts come from. `open_source(spec)` turns what a person typed into a Source.

The forms are parsed by bot/naming.py (one grammar for the CLI, the service and Discord): `@handle` or `handle`
(X API v2), a path to an X archive (`.zip`, folder, `tweets.js`/`tweet.js`), a `.txt` (one post a line) or
`.jsonl` (`{"text": ...}` a line) with `handle=` given, `bsky:handle` (Bluesky) and `mastodon:@user@instance`.
"""

from __future__ import annotations

from ..config import Settings
from ..errors import ValidationError
from ..naming import AccountSpec, looks_like_path, parse_spec
from ..naming import normalise_handle
from .base import AccountInfo, FetchResult, RawPost, Source

__all__ = ["AccountInfo", "FetchResult", "RawPost", "SOURCES", "Source", "normalise_handle", "open_source",
           "looks_like_path"]

# Every kind of source `open_source` reads, as the model card names them (keep in step with open_source).
SOURCES = ("the X API", "an X archive export", "Bluesky", "Mastodon", "text files (.txt, one post a line, or .jsonl)")


def open_source(spec: str | AccountSpec, settings: Settings, handle: str | None = None) -> Source:
    """The Source for one SOURCE argument. Raises ValidationError for a form it cannot read."""
    parsed = spec if isinstance(spec, AccountSpec) else parse_spec(spec)
    if parsed.path is not None:
        from .files import open_file_source

        return open_file_source(parsed.path, handle)
    if parsed.network == "bsky":
        from .bluesky import BlueskySource

        return BlueskySource(parsed.handle, settings)
    if parsed.network == "mastodon":
        from .mastodon import MastodonSource

        return MastodonSource(parsed.handle, settings)
    if parsed.network == "discord":
        raise ValidationError(f"{parsed.spec} names a Discord user; Discord messages are not a post source "
                              "(use their X, Bluesky or Mastodon account, or an archive)")
    if not parsed.fetchable_from_x:
        raise ValidationError(f"@{parsed.handle} is longer than X's 15 characters, so no X account has it; an "
                              "imported account of that name is named by its handle only once it is stored")
    from .x_api import XApiSource

    return XApiSource(parsed.handle, settings)
