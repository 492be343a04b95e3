"""How posts are framed in tokens, for any causal LM: the one place the trainer and the sampler agree on it.

The recipe joined GPT-2 posts with its end-of-text token: `EOT post EOT post EOT`. A base whose tokenizer has
its own beginning token (Llama, SmolLM, Qwen2 built with one) frames each post with both instead:
`BOS post EOS BOS post EOS`. So, with `end` the tokenizer's end-of-sequence token and `start` its beginning
token where it has a distinct one:

    GPT-2 (no distinct beginning token)    head = [EOS]   each post = post + [EOS]
    a tokenizer with a beginning token     head = []      each post = [BOS] + post + [EOS]

and the prompt of a new post is what the model read before every trained post: `[EOS] + opener` for GPT-2,
`[BOS] + opener` otherwise. A reply's parent is framed the same way, in front of the reply. No chat template:
posts are plain text. For GPT-2 this is exactly the recipe's stream.

`context_length(config)` reads the context from whichever field the architecture names it by.
torch-free: the model store and the base-model checks read it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE = -100  # a label the loss leaves out (transformers' convention)
# the config fields that hold the context length, by architecture: GPT-2 (n_positions, older n_ctx), Llama,
# Qwen2, Mistral, Phi (max_position_embeddings), a few others (seq_length, max_sequence_length)
CONTEXT_FIELDS = ("n_positions", "max_position_embeddings", "n_ctx", "seq_length", "max_sequence_length")


def context_length(config) -> int | None:
    """The model's context in tokens, from a config object or a config.json dict (None: not stated)."""
    for name in CONTEXT_FIELDS:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class Framing:
    end: int  # the end-of-sequence token: ends every post
    start: int | None = None  # a distinct beginning-of-sequence token, when the tokenizer has one

    @classmethod
    def of(cls, tokenizer) -> Framing:
        eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no end-of-sequence token to end posts with")
        return cls(end=eos, start=bos if bos is not None and bos != eos else None)

    @property
    def head(self) -> list[int]:
        """What the stream starts with, before the first post's frame."""
        return [] if self.start is not None else [self.end]

    @property
    def lead(self) -> list[int]:
        """What each post starts with."""
        return [self.start] if self.start is not None else []

    @property
    def stops(self) -> list[int]:
        """Tokens that end a sampled post: the end token, and a beginning token (a new post starting)."""
        return [self.end, *self.lead]

    def stream(self, post_ids: list[list[int]], context_ids: list[list[int]] | None = None
               ) -> tuple[list[int], list[int]]:
        """The training stream and its labels. A post with a context (a reply's parent) is preceded by it in
        its own frame, whose tokens are not labels (IGNORE): the model reads the parent, never learns to
        write it."""
        ids, labels = list(self.head), list(self.head)
        for post, context in zip(post_ids, context_ids or [[]] * len(post_ids)):
            if context:
                framed = self.lead + context + [self.end]
                ids += framed
                labels += [IGNORE] * len(framed)
            framed = self.lead + post + [self.end]
            ids += framed
            labels += framed
        return ids, labels

    def prompt(self, opener_ids: list[int], context_ids: list[int] | None = None) -> list[int]:
        """What the model reads before it writes a post: the head, the context's frame (a reply's parent),
        then the post's lead and the opener. For GPT-2: EOT [parent EOT] opener."""
        ids = list(self.head)
        if context_ids:
            ids += self.lead + context_ids + [self.end]
        return ids + self.lead + opener_ids


__all__ = ["CONTEXT_FIELDS", "IGNORE", "Framing", "context_length"]
