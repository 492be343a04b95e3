"""Generation: sampling from a trained model, the anti-copy check, the model store and the model cache.

`generate` is what the service serves: sampling settings resolved (call > the model's
generation_config.json > the recipe's defaults), samples checked against the training posts, and
refused ones replaced by fresh samples within a small budget.

torch and transformers are imported by `sampling` and `models.ModelStore.load` only, so that listing
models or reading an anti-copy index stays quick.
"""

from __future__ import annotations

import math
import time
from functools import partial
from dataclasses import asdict, dataclass, field

from ..cleaning import DEFAULT_PROMPT
from ..errors import ValidationError
from .cache import LoadedModel

EXTRA_ROUNDS = 3  # resampling rounds after the first, for samples the anti-copy check refused
SPARE = 0.3  # the first round draws this much more than asked (rounded down): spare rows in one batch cost far less
# than a second round (bench/README.md), and some samples are always refused
MAX_BATCH = 32
# The recipe's sampling (../shared/reference/huggingtweets-recipe.md), saved as every model's defaults;
# max_length and min_length count the end-of-text token and the opener, as transformers' do.
DEFAULTS = {"temperature": 1.0, "top_p": 0.95, "top_k": 50, "max_length": 160, "min_length": 10}
SETTINGS = (*DEFAULTS, "max_new_tokens")  # max_new_tokens: a budget of new tokens instead of max_length
CUT = "did not end within the token budget"
MAX_N = 64
MAX_NEW_TOKENS = 1024


def check_settings(n, *, temperature=None, top_p=None, top_k=None, max_new_tokens=None, seed=None) -> None:
    """Out-of-range or wrong-typed sampling settings are a person's mistake: a ValidationError that names the
    one and why, before any model is loaded. None: not given (the model's or the recipe's default applies)."""
    def shown(value) -> str:
        text = repr(value)
        return text if len(text) <= 30 else text[:29] + "…"

    if not _whole(n) or not 1 <= n <= MAX_N:
        raise ValidationError(f"n must be between 1 and {MAX_N} (got {shown(n)})")
    if max_new_tokens is not None and (not _whole(max_new_tokens) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS):
        raise ValidationError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS} (got {shown(max_new_tokens)})")
    if temperature is not None and not (_number(temperature) and 0 < temperature < math.inf):
        raise ValidationError(f"temperature must be above 0 and finite (got {shown(temperature)})")
    if top_p is not None and not (_number(top_p) and 0 < top_p <= 1):
        raise ValidationError(f"top_p must be in (0, 1] (got {shown(top_p)})")
    if top_k is not None and not (_whole(top_k) and top_k >= 0):
        raise ValidationError(f"top_k must be 0 (off) or more (got {shown(top_k)})")
    if seed is not None and not (_whole(seed) and abs(seed) < 2**62):
        raise ValidationError(f"seed must be a whole number below 2**62 (got {shown(seed)})")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@dataclass
class GenerationResult:
    """Accepted texts (up to n), how many samples were refused, how many were drawn, and the time taken.

    `reasons` says why each refused sample was refused; the refused texts themselves are not kept, as they
    reproduce someone's posts."""

    texts: list[str]
    rejected: int
    attempts: int
    seconds: float
    model_id: str = ""
    prompt: str = DEFAULT_PROMPT
    settings: dict = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_settings(loaded: LoadedModel, prompt: str = DEFAULT_PROMPT, **given) -> dict:
    """Sampling settings: those given (not None), else the model's generation_config.json, else DEFAULTS.

    The budget is `max_length` tokens in all (end-of-text and the opener included), unless `max_new_tokens`
    is given or the model's config sets it (models trained before mimicbot followed the recipe's budget
    carry `max_new_tokens` 60)."""
    settings = {**DEFAULTS, **{k: v for k, v in loaded.defaults.items() if k in SETTINGS}}
    settings.update({k: v for k, v in given.items() if v is not None})
    return settings


def generate(loaded: LoadedModel, prompt: str = DEFAULT_PROMPT, n: int = 5, *, seed: int | None = None,
             extra_rounds: int = EXTRA_ROUNDS, context: str | None = None, spare: float = SPARE,
             **given) -> GenerationResult:
    """Up to `n` new, whole posts from `loaded`, each starting with `prompt` ("" for none). Samples that did
    not end within the budget, copy a training post, say nothing beyond the prompt or repeat another sample
    are refused and replaced, drawing twice the shortfall in each extra round. `context`: the message a reply
    answers, read by the model before the post (see sampling.sample). `spare`: the first round draws this share
    more rows than asked (rounded down); the rows are read in order and those after the n-th post kept are not
    examined. On the int8 path the engine stops them too, as soon as the rows before them give n posts
    (`enough`): spares then cost little, however many are drawn."""
    from .sampling import sample

    check_settings(n, **{k: v for k, v in given.items() if k in DEFAULTS})
    started = time.perf_counter()
    settings = resolve_settings(loaded, prompt, **given)
    texts: list[str] = []
    reasons: list[str] = []
    attempts = 0
    for round_ in range(1 + extra_rounds):
        missing = n - len(texts)
        if missing <= 0:
            break
        batch = min(MAX_BATCH, missing + int(spare * missing) if round_ == 0 else 2 * missing)
        round_seed = None if seed is None else seed + round_
        reader = RowReader(loaded, prompt, n, texts)
        draw = (partial(loaded.engine.sample, enough=reader.read) if loaded.engine is not None
                else partial(sample, loaded.model, activate=loaded.activate))
        reader.read(draw(loaded.tokenizer, prompt, batch, seed=round_seed, context=context, **settings))
        texts = reader.kept
        reasons += reader.reasons
        attempts += reader.examined
    return GenerationResult(texts, len(reasons), attempts, round(time.perf_counter() - started, 3),
                            loaded.model_id, prompt, {**settings, "seed": seed}, reasons)


class RowReader:
    """Reads one round's rows in order after the posts already `accepted`, until there are `n`: `kept` (those posts
    and the new ones), the `reasons` of the rows refused, how many rows were `examined`; the rows after the n-th
    post are not examined. The rows may come as a growing run (the int8 engine's `enough` hook, then its result):
    each row is examined once."""

    def __init__(self, loaded: LoadedModel, prompt: str, n: int, accepted: list[str]):
        self.loaded, self.prompt, self.n = loaded, prompt, n
        self.kept, self.reasons, self.examined = list(accepted), [], 0

    def read(self, rows: list[str | None]) -> bool:
        """Examines the rows of `rows` not read yet (it begins with those already read); are there `n` posts now?"""
        for text in rows[self.examined:]:
            if len(self.kept) == self.n:
                break
            self.examined += 1
            reason = CUT if text is None else refusal(self.loaded, self.prompt, text, self.kept)
            if reason:
                self.reasons.append(reason)
            else:
                self.kept.append(text)
        return len(self.kept) == self.n


def refusal(loaded: LoadedModel, prompt: str, text: str, accepted: list[str]) -> str | None:
    """Why a sample is not fit to post, or None."""
    if len(text.split()) <= len(prompt.split()):
        return "nothing after the prompt"
    if text in accepted:
        return "same as another sample"
    return loaded.anticopy.check(text) if loaded.anticopy is not None else None


__all__ = ["CUT", "DEFAULTS", "GenerationResult", "LoadedModel", "check_settings", "generate", "resolve_settings"]
