"""Where posts come from. `open_source(spec)` turns what a person typed into a Source.

Forms: `@handle` or `handle` (X API v2), a path to an X archive (`.zip`, folder, `tweets.js`/`tweet.js`),
a `.txt` (one post a line) or `.jsonl` (`{"text": ...}` a line) with `handle=` given,
`bsky:handle` (Bluesky) and `mastodon:@user@instance` (Mastodon).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..config import Settings
from ..errors import ValidationError
from .base import AccountInfo, FetchResult, RawPost, Source, normalise_handle

__all__ = ["AccountInfo", "FetchResult", "RawPost", "SOURCES", "Source", "normalise_handle", "open_source",
           "looks_like_path"]

# Every kind of source `open_source` reads, as the model card names them (keep in step with open_source).
SOURCES = ("the X API", "an X archive export", "Bluesky", "Mastodon", "text files (.txt, one post a line, or .jsonl)")

_X_HANDLE = re.compile(r"^@?[A-Za-z0-9_]{1,15}$")


def looks_like_path(spec: str) -> bool:
    """A path: it has a separator or a known ending, or it is not a handle and exists. A bare word that is a
    valid handle stays a handle even when a folder of that name happens to exist (`data`, `models`)."""
    return (
        "/" in spec
        or "\\" in spec
        or spec.lower().endswith((".zip", ".js", ".txt", ".jsonl"))
        or (not _X_HANDLE.match(spec) and Path(spec).exists())
    )


def open_source(spec: str, settings: Settings, handle: str | None = None) -> Source:
    """The Source for one SOURCE argument. Raises ValidationError for a form it cannot read."""
    spec = spec.strip()
    if spec.startswith("bsky:"):
        from .bluesky import BlueskySource

        return BlueskySource(spec[len("bsky:"):], settings)
    if spec.startswith("mastodon:"):
        from .mastodon import MastodonSource

        return MastodonSource(spec[len("mastodon:"):], settings)
    if looks_like_path(spec):
        from .files import open_file_source

        return open_file_source(Path(spec), handle)
    if _X_HANDLE.match(spec):
        from .x_api import XApiSource

        return XApiSource(normalise_handle(spec), settings)
    raise ValidationError(
        f"{spec!r} is neither an X handle (1-15 letters, digits or _), an existing file, "
        "nor bsky:HANDLE / mastodon:@user@instance"
    )
