"""Sampling whole posts from a fine-tuned GPT-2, as the recipe does it.

The prompt is `<|endoftext|>` followed by the opener (the start text: "My dream is" for `generate`, nothing
at all for autonomous posts): the model was trained on posts joined by that token, so it reads the prompt
as "a new post starts here". A base whose tokenizer has a beginning token reads that token instead
(bot/generation/framing.py). A reply puts the message it answers before that (`context`): its own frame (for
GPT-2 end-of-text and the message), cut to its last tokens when the model's context less the post's budget cannot
hold it all (GPT-2: 864 tokens). `n` samples are drawn as one batch (`num_return_sequences`) with the KV cache.

The recipe's settings: `top_p` 0.95, temperature 1.0, `top_k` 50 (what `generate` applied when the recipe set
none), at least `min_length` 10 and at most `max_length` 160 tokens counting the end-of-text token and the
opener (the context of a reply is not counted). A post ends at its first line break or end-of-text: a stopping
rule marks each row finished as soon as it emits such a token; finished rows are padded and the batch ends when
every row is done. A row that reaches the budget without ending is cut in the middle of a post: it is returned
as None (`generate` counts it refused and draws again), never as a post. Each finished text is cut at its
first line break and its spaces folded; it starts with the opener.

The torch random generator is process-global, so sampling holds one process-wide lock around seeding
and generating: a seeded call is reproducible even while other threads generate, and the global
generator is restored afterwards. On a CPU one generation already uses every core, so the lock costs
little throughput.
"""

from __future__ import annotations

import random
import re
import threading
import weakref

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from ..errors import ValidationError
from ..cleaning import DEFAULT_PROMPT
from . import check_settings
from .framing import Framing, context_length

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # not line breaks, not whitespace: never in a post
_LOCK = threading.Lock()
LOCK = _LOCK  # held while sampling; a shared base's adapters change only under it (bot/generation/bases.py)
_STOP_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class StopAtNewline(StoppingCriteria):
    """Marks a row finished once its newest token holds a line break or is end-of-text."""

    def __init__(self, stop_ids: torch.Tensor):
        self.stop_ids = stop_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.isin(input_ids[:, -1], self.stop_ids.to(input_ids.device))


def stop_token_ids(tokenizer) -> torch.Tensor:
    """Every token id whose text holds a line break (any that str.splitlines knows), plus end-of-text (and
    a distinct beginning token: a new post starting). Computed once per tokenizer."""
    try:
        return _STOP_IDS[tokenizer]
    except (KeyError, TypeError):
        pass
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    ids = [i for i, t in enumerate(texts) if t and t.splitlines() != [t]]
    if tokenizer.eos_token_id is not None:
        ids += Framing.of(tokenizer).stops
    stop = torch.tensor(sorted(set(ids)), dtype=torch.long)
    try:
        _STOP_IDS[tokenizer] = stop
    except TypeError:  # pragma: no cover - a tokenizer that refuses weak references: recompute each time
        pass
    return stop


MAX_LENGTH = 160  # the recipe's budget: end-of-text, opener and post, in tokens
MIN_LENGTH = 10  # the recipe's minimum, counted the same way (end-of-text cannot come earlier)
TOP_K = 50  # transformers' default, which applied because the recipe set none


def check_params(n: int, max_new_tokens: int | None, temperature: float, top_p: float, top_k: int,
                 max_length: int = MAX_LENGTH, min_length: int = MIN_LENGTH) -> None:
    """Out-of-range sampling settings are a person's mistake: say which one and why."""
    check_settings(n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k)
    if max_length < 2 or max_length > 2048:
        raise ValidationError(f"max_length must be between 2 and 2048 (got {max_length})")
    if min_length < 0 or min_length > max_length:
        raise ValidationError(f"min_length must be between 0 and max_length {max_length} (got {min_length})")


def first_line(text: str) -> str:
    """A sample's post: up to its first line break, control characters dropped and spaces folded (as
    cleaning left the training posts)."""
    lines = text.splitlines()
    return " ".join(_CONTROL.sub("", lines[0]).split()) if lines else ""


def sample(
    model,
    tokenizer,
    prompt: str = DEFAULT_PROMPT,
    n: int = 5,
    *,
    max_length: int = MAX_LENGTH,
    min_length: int = MIN_LENGTH,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_p: float = 0.95,
    top_k: int = TOP_K,
    seed: int | None = None,
    context: str | None = None,
    activate=None,
) -> list[str | None]:
    """`n` posts starting with `prompt` (its spaces folded; "" lets the model write the whole post), each cut
    at its first line break or end-of-text; None for a row that used its whole budget without ending.

    The budget is `max_length` tokens counting end-of-text and the prompt (the recipe's), or `max_new_tokens`
    new tokens when given. `context`, when given, is read before the post (a reply's parent message) and is
    not counted. Same seed, same texts. `activate`, when given, is called under the sampling lock before
    generating (a LoRA persona selects its adapter on a shared base: bot/generation/bases.py)."""
    check_params(n, max_new_tokens, temperature, top_p, top_k, max_length, min_length)
    prompt = fold(prompt)
    eos = tokenizer.eos_token_id
    device = next(model.parameters()).device
    with _LOCK:  # also keeps a fast tokenizer to one thread at a time
        if activate is not None:
            activate()
        framing = Framing.of(tokenizer)
        stop_ids = stop_token_ids(tokenizer)
        stopping = StoppingCriteriaList([StopAtNewline(stop_ids)])
        ids, post_len, budget = reading(tokenizer, prompt, context, context_length(model.config),
                                        max_length=max_length, max_new_tokens=max_new_tokens)
        config = GenerationConfig(  # lengths in all (as the model's own config states them), so that they replace its
            do_sample=True, num_return_sequences=n, max_length=len(ids) + budget,
            min_length=len(ids) + min(budget, max(0, min_length - post_len)),
            temperature=temperature, top_p=top_p, top_k=top_k, pad_token_id=eos, eos_token_id=framing.stops, use_cache=True,
        )
        input_ids = torch.tensor([ids], device=device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed if seed is not None else random.SystemRandom().randrange(2**63))
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 generation_config=config, stopping_criteria=stopping)
        new = out[:, len(ids):]
        ended = torch.isin(new, stop_ids.to(new.device)).any(dim=1).tolist()
        posts = [prompt + tokenizer.decode(until(row.tolist(), framing.stops)) for row in new]
    return [first_line(p) if done else None for p, done in zip(posts, ended)]


def until(ids: list[int], stops: list[int]) -> list[int]:
    """The ids before the first of `stops` (end-of-text: the post ended there; padding follows)."""
    found = [i for i, token in enumerate(ids) if token in stops]
    return ids[:found[0]] if found else ids


def fold(prompt: str) -> str:
    """The prompt on one line: a line break in it would end every post at once."""
    return " ".join(prompt.split())


def prompt_length(tokenizer, prompt: str) -> int:
    """Tokens the model reads before it writes: end-of-text and the prompt."""
    with _LOCK:
        return len(_prompt_ids(tokenizer, fold(prompt)))


def _text_ids(tokenizer, text: str) -> list[int]:
    """Plain text as token ids (a literal "<|endoftext|>" in it stays text)."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    """What the model reads before it writes a post, without a context: the end-of-text token (or the
    beginning token of a tokenizer that has one), then the prompt as plain text."""
    return Framing.of(tokenizer).prompt(_text_ids(tokenizer, prompt))


def reading(tokenizer, prompt: str, context: str | None, context_size: int | None, *, max_length: int,
            max_new_tokens: int | None) -> tuple[list[int], int, int]:
    """What the model reads before it writes (the ids), how many of them are the post's own (its lead and the
    opener: they count in `max_length` and `min_length`, a reply's context does not), and the budget of new
    tokens, fitted into the model's context (`context_size` tokens; None: unbounded). A context longer than the
    model's context less the post's budget keeps its last tokens (the words nearest the reply), so that a long
    message never makes a reply fail nor eats the post's budget; no room at all, no context."""
    framing = Framing.of(tokenizer)
    opener = _text_ids(tokenizer, prompt)
    post_len = len(framing.prompt(opener))
    budget = max_new_tokens if max_new_tokens is not None else max_length - post_len
    if budget < 1:
        raise ValidationError(f"the prompt is {post_len} tokens; the budget of {max_length} tokens "
                              "leaves no room for a post")
    message = _text_ids(tokenizer, fold(context)) if context else []
    if message and context_size:
        keep = max(0, context_size - post_len - budget - len(framing.lead) - 1)  # less the frame's own tokens
        message = message[len(message) - keep:] if keep else []
    ids = framing.prompt(opener, message or None)
    return ids, post_len, fit(context_size, len(ids), budget)


def fit(context_size: int | None, prompt_tokens: int, max_new_tokens: int) -> int:
    """max_new_tokens, shortened so that prompt and post fit in `context_size` tokens (None: no bound)."""
    if not context_size:
        return max_new_tokens
    if prompt_tokens >= context_size:
        raise ValidationError(f"the prompt is {prompt_tokens} tokens; this model reads at most {context_size - 1}")
    return min(max_new_tokens, context_size - prompt_tokens)


# Shared with the int8 path (ct2.py), which reads the same prompt and holds the same lock.
LOCK = _LOCK
