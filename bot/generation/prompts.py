"""The one rule for a prompt: what a person types to start a post (`generate`, `/generate`) and a post's
fixed opener (`schedule add --prompt`, `post --prompt`). Both are folded to one line (a post is one line) and
refused when they hold a control character, a direction override or half a surrogate pair (none is text a post
could start with), or are longer than their limit. A person's prompt must show something; an opener may be
empty: the model then writes the whole post from the start-of-post token."""

from __future__ import annotations

import unicodedata

from ..errors import ValidationError

MAX_PROMPT_CHARS = 1000  # a prompt is how a post starts; the model reads about 1,024 tokens in all
MAX_OPENER_CHARS = 200  # a scheduled post's fixed opening words
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_prompt(prompt: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """The prompt as the model reads it (whitespace folded to single spaces), or a ValidationError: empty or only
    invisible characters, longer than `limit`, or holding a control character."""
    folded = _fold(prompt)
    visible = [c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf"]
    if not visible or len(folded) > limit:
        raise ValidationError(f"the prompt must be 1 to {limit} characters")
    return folded


def check_opener(opener: str | None, limit: int = MAX_OPENER_CHARS) -> str | None:
    """A post's fixed opener on one line, None when there is none; a ValidationError as for `check_prompt`,
    except that an empty opener is allowed."""
    folded = _fold(opener or "")
    if len(folded) > limit:
        raise ValidationError(f"the prompt is {len(folded)} characters; at most {limit}")
    return folded or None


def _fold(text: str) -> str:
    if not isinstance(text, str):
        raise ValidationError("the prompt must be text")
    folded = " ".join(text.split())
    for char in folded:
        if char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cs"):
            raise ValidationError(f"the prompt contains an invisible control character (U+{ord(char):04X}); "
                                  "remove it")
    return folded
