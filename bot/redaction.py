"""Secrets never leave the process in text: one redactor for logs, errors, and whatever is stored.

`Redactor.for_settings(settings)` knows every secret setting that is set (each `SecretStr` field of Settings:
the X keys and tokens, the Bluesky app password, the Mastodon token, the Discord token, the W&B key, the HF
token). It replaces each with `***` in any text, in every form a secret takes on its way through HTTP and
JSON: as is, URL-encoded (`%20` and `+` for spaces), JSON-escaped, and any stack of those (an echoed request
inside a JSON error body, URL-encoded twice by a proxy: see `secret_pattern`). It also hides what looks like
a credential whatever its value: the rest of an `Authorization:` header or a `Bearer ...` token, a JWT (a
Bluesky session), `oauth_signature=...`.

Building a Redactor from settings also registers its secrets with the process (`register`), so `redact(text)`
— used by the network callers (bot/networks) for every error text coming from the network, by the log
formatters, the posting ledger, the job records and the hub push — knows every secret any part of the process
has been configured with, even where no Settings object is at hand.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable

from pydantic import SecretStr

MIN_SECRET_LEN = 4  # shorter values would redact ordinary words
MASK = "***"

# What looks like a credential, whatever its value (group 1 is kept, the rest masked).
_SHAPES = [
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:[A-Za-z]+ )?[^\s'\",}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/=]{8,}"),
    re.compile(r"()\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(r"(?i)(oauth_(?:signature|token|consumer_key)[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,]+"),
]
# An ASCII text must hold one of these (lowered) to match a shape. Not a text with other characters: the shapes and
# secret patterns ignore case by Unicode's rules, where "ı" and "ſ" match "i" and "s" and lower() maps neither.
_SHAPE_WORDS = ("authorization", "bearer", "eyj", "oauth_")


_BACKSLASHES = r"(?:\\|%(?:25)*5C)*"  # JSON escapes before a character, themselves URL-encoded or not


def _char(c: str) -> str:
    """A regex for one character of a secret in any stack of URL and JSON encodings: letters, digits and
    `-._~` are never encoded; any other character may be itself, percent-encoded (`%22`, `%2522`, ...),
    `+` for a space, or a JSON `\\u0022`, each behind JSON escapes (`\\"`, `%5C%22`, ...)."""
    if c.isascii() and (c.isalnum() or c in "-._~"):
        return re.escape(c)
    alternatives = [re.escape(c), "".join(f"%(?:25)*{byte:02X}" for byte in c.encode("utf-8"))]
    if c == " ":
        alternatives.append(r"\+")
    if ord(c) < 0x10000:
        alternatives.append(rf"(?:\\|%(?:25)*5C)u{ord(c):04X}")
    return _BACKSLASHES + "(?:" + "|".join(alternatives) + ")"


def secret_pattern(secret: str) -> re.Pattern:
    """Matches `secret` raw, URL-encoded, JSON-escaped, and any stack of those (an echoed request's header
    inside a JSON error body, URL-encoded twice by a proxy...): each encoding keeps letters and digits as they
    are and only spells the other characters differently."""
    return re.compile("".join(_char(c) for c in secret), re.IGNORECASE)


def _anchor(secret: str) -> str:
    """The longest run of letters and digits in `secret`: every encoded form contains it (a cheap pre-check)."""
    runs = re.findall(r"[A-Za-z0-9]+", secret)
    return max(runs, key=len).lower() if runs else ""


class Redactor:
    """Replaces each secret, in each of its encoded forms, and each credential-shaped run with `***`."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = {s for s in secrets if s and len(s) >= MIN_SECRET_LEN}
        # longest first, so that a secret containing another is replaced whole
        self._patterns = [(_anchor(s), secret_pattern(s)) for s in sorted(self.secrets, key=len, reverse=True)]

    @classmethod
    def for_settings(cls, settings) -> Redactor:
        """Every SecretStr setting that is set; registered with the process as well."""
        values = (getattr(settings, name, None) for name in type(settings).model_fields)
        secrets = [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
        register(secrets)
        return cls(secrets)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        lowered = text.lower()
        ascii_only = lowered.isascii()
        for anchor, pattern in self._patterns:
            if anchor in lowered or not ascii_only:
                text = pattern.sub(MASK, text)
        if not ascii_only or any(word in lowered for word in _SHAPE_WORDS):  # most texts: four scans saved
            for shape in _SHAPES:
                text = shape.sub(lambda m: m.group(1) + MASK, text)
        return text


# -- the process's secrets -----------------------------------------------------------------------------------

_lock = threading.Lock()
_known: set[str] = set()
_process = Redactor()


def register(secrets: Iterable[str | None]) -> None:
    """Add secrets to those `redact()` hides (each client registers the credentials it is given)."""
    global _process
    new = {s for s in secrets if s and len(s) >= MIN_SECRET_LEN} - _known
    if not new:
        return
    with _lock:
        _known.update(new)
        _process = Redactor(_known)


def redact(text: str) -> str:
    """`text` without any secret this process knows of (see the module docstring)."""
    return _process(text) if isinstance(text, str) else text


def redacted(error: BaseException) -> BaseException:
    """`error` with every known secret taken out of its message (an error made of one text argument)."""
    if len(error.args) == 1 and isinstance(error.args[0], str):
        clean = redact(error.args[0])
        if clean != error.args[0]:
            error.args = (clean,)
    return error


class RedactingStream:
    """A text stream that redacts what is written to it, then passes it on (`sys.stdout`, `sys.stderr`)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def redact_output(settings=None) -> None:
    """Route this process's `sys.stdout` and `sys.stderr` through the redactor (the CLI, a training child).
    With `settings`, their secrets are registered; without, those of the environment and .env when they load."""
    if settings is None:
        try:
            from .config import Settings

            settings = Settings()
        except Exception:  # noqa: BLE001 - a bad setting is reported by the command that reads it
            settings = None
    if settings is not None:
        Redactor.for_settings(settings)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))


class RedactingFilter(logging.Filter):
    """Redacts the records of a logger before any handler sees them (for libraries that log each request at
    DEBUG, credentials included: tweepy, requests-oauthlib, oauthlib)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


CHATTY_LOGGERS = ("tweepy.client", "tweepy.asynchronous.client", "requests_oauthlib.oauth1_auth",
                  "oauthlib.oauth1.rfc5849", "httpx", "urllib3.connectionpool")
_filter = RedactingFilter()
for _name in CHATTY_LOGGERS:
    logging.getLogger(_name).addFilter(_filter)
