"""Sampling posts from a fine-tuned GPT-2, as the recipe does it.

The prompt is `<|endoftext|>` followed by the start text ("My dream is"): the model was trained on posts
joined by that token, so it reads the prompt as "a new post starts here". `n` samples are drawn as one
batch (`num_return_sequences`) with the KV cache. A post ends at its first newline or end-of-text, so a
stopping rule marks each row finished as soon as it emits such a token; finished rows are padded and
the batch ends when every row is done, long before `max_new_tokens` in the usual case. Each text is then
cut at its first newline and stripped; it starts with the prompt words.

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

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # not line breaks, not whitespace: never in a post
_LOCK = threading.Lock()
_STOP_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class StopAtNewline(StoppingCriteria):
    """Marks a row finished once its newest token holds a line break or is end-of-text."""

    def __init__(self, stop_ids: torch.Tensor):
        self.stop_ids = stop_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.isin(input_ids[:, -1], self.stop_ids.to(input_ids.device))


def stop_token_ids(tokenizer) -> torch.Tensor:
    """Every token id whose text holds a line break (any that str.splitlines knows), plus end-of-text.
    Computed once per tokenizer."""
    try:
        return _STOP_IDS[tokenizer]
    except (KeyError, TypeError):
        pass
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    ids = [i for i, t in enumerate(texts) if t and t.splitlines() != [t]]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    stop = torch.tensor(sorted(set(ids)), dtype=torch.long)
    try:
        _STOP_IDS[tokenizer] = stop
    except TypeError:  # pragma: no cover - a tokenizer that refuses weak references: recompute each time
        pass
    return stop


def check_params(n: int, max_new_tokens: int, temperature: float, top_p: float, top_k: int) -> None:
    """Out-of-range sampling settings are a person's mistake: say which one and why."""
    check_settings(n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k)


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
    max_new_tokens: int = 60,
    temperature: float = 1.0,
    top_p: float = 0.95,
    top_k: int = 0,
    seed: int | None = None,
) -> list[str]:
    """`n` posts starting with `prompt` (its spaces folded), each cut at its first line break or
    end-of-text. Same seed, same texts."""
    check_params(n, max_new_tokens, temperature, top_p, top_k)
    prompt = fold(prompt)
    eos = tokenizer.eos_token_id
    device = next(model.parameters()).device
    with _LOCK:  # also keeps a fast tokenizer to one thread at a time
        stopping = StoppingCriteriaList([StopAtNewline(stop_token_ids(tokenizer))])
        ids = _prompt_ids(tokenizer, prompt)
        config = GenerationConfig(
            do_sample=True, num_return_sequences=n, max_new_tokens=fit_context(model, len(ids), max_new_tokens),
            temperature=temperature, top_p=top_p, top_k=top_k, pad_token_id=eos, eos_token_id=eos, use_cache=True,
        )
        input_ids = torch.tensor([ids], device=device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed if seed is not None else random.SystemRandom().randrange(2**63))
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 generation_config=config, stopping_criteria=stopping)
        posts = [prompt + tokenizer.decode(until(row[len(ids):].tolist(), eos)) for row in out]
    return [first_line(p) for p in posts]


def until(ids: list[int], stop: int) -> list[int]:
    """The ids before the first `stop` (end-of-text: the post ended there; padding follows)."""
    return ids[:ids.index(stop)] if stop in ids else ids


def fold(prompt: str) -> str:
    """The prompt on one line: a line break in it would end every post at once."""
    return " ".join(prompt.split())


def prompt_length(tokenizer, prompt: str) -> int:
    """Tokens the model reads before it writes: end-of-text and the prompt."""
    with _LOCK:
        return len(_prompt_ids(tokenizer, fold(prompt)))


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The end-of-text token, then the prompt as plain text (a literal "<|endoftext|>" in it stays text)."""
    return [tokenizer.eos_token_id] + tokenizer(prompt, add_special_tokens=False,
                                                split_special_tokens=True)["input_ids"]


def fit_context(model, prompt_tokens: int, max_new_tokens: int) -> int:
    """max_new_tokens, shortened so that prompt and post fit in the model's context."""
    context = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if not context:
        return max_new_tokens
    if prompt_tokens >= context:
        raise ValidationError(f"the prompt is {prompt_tokens} tokens; this model reads at most {context - 1}")
    return min(max_new_tokens, context - prompt_tokens)
