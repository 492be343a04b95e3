"""Models for tests: the tiny base (built once per session, offline), random GPT-2s, model folders.

torch and transformers are imported where they are used: conftest registers this module as a plugin, and a
process that runs no model test (pytest-xdist's controller, a fast run of other files) need not load them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.generation.anticopy import build_index, normalise
from bot.modelfolder import ANTICOPY_FILE, GENERATION_FILE, TRAINING_FILE

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    """The offline base model, as a local folder: the tiny tokenizer (trained on the bundled samples) and a
    random two-layer GPT-2. Built once for the whole session."""
    from bot.training.tiny import ensure_tiny_base

    return str(ensure_tiny_base(tmp_path_factory.mktemp("base")))


def random_gpt2(tokenizer, seed: int = 0, **config) -> GPT2LMHeadModel:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    sizes = {"n_positions": 256, "n_embd": 32, "n_layer": 2, "n_head": 2, **config}
    cfg = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                     eos_token_id=tokenizer.eos_token_id, **sizes)
    return GPT2LMHeadModel(cfg).eval()


def make_model_dir(models_dir: Path, model_id: str, base: Path, *, model=None, training_texts=(),
                   generation: dict | None = None, record: dict | None = None) -> Path:
    """A model directory as the trainer publishes it: weights, tokenizer, generation config, anti-copy
    index and training.json."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(models_dir) / model_id
    (model or AutoModelForCausalLM.from_pretrained(base)).save_pretrained(path)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    if generation is not None:
        config = json.loads((path / GENERATION_FILE).read_text())
        (path / GENERATION_FILE).write_text(json.dumps({**config, **generation}))
    build_index(list(training_texts)).save(path / ANTICOPY_FILE)
    record = record or {"model_id": model_id, "display_name": model_id.title(),
                        "accounts": [{"handle": model_id, "display_name": model_id.title()}],
                        "finished_at": "2025-12-06T18:20:30+00:00", "eval": {"perplexity_after": 12.5}}
    (path / TRAINING_FILE).write_text(json.dumps(record))
    return path


@pytest.fixture(scope="session")
def tiny_llama_base(tmp_path_factory) -> str:
    """A tiny random Llama with a tokenizer of its own (<|begin_of_text|> added by the tokenizer itself,
    <|end_of_text|> ending sequences): a modern base, offline."""
    from bot.training.tiny import ensure_tiny_base

    return str(ensure_tiny_base(tmp_path_factory.mktemp("base-llama"), "tiny-llama"))


@pytest.fixture(scope="session")
def tiny_qwen2_base(tmp_path_factory) -> str:
    """A tiny random Qwen2 (tied embeddings; <|im_start|> begins a post but the tokenizer does not add it,
    <|im_end|> ends it)."""
    from bot.training.tiny import ensure_tiny_base

    return str(ensure_tiny_base(tmp_path_factory.mktemp("base-qwen2"), "tiny-qwen2"))


# Trained once per session through the real training pool (a child process per job): for each modern tiny base,
# @ada_bytes fully fine-tuned, and @grace_gardens and the pair of them as LoRA personas over that base.
PERSONAS = {"ada_bytes": {"lora": False}, "grace_gardens": {"lora": True},
            "ada_bytes-grace_gardens": {"lora": True, "lora_rank": 4}}


@pytest.fixture(scope="session")
def modern_personas(tmp_path_factory, tiny_llama_base, tiny_qwen2_base) -> dict[str, tuple[Path, Path]]:
    """{"llama" | "qwen2": (data dir, models dir)} holding the PERSONAS trained over that tiny base."""
    return {arch: asyncio.run(_train_personas(tmp_path_factory.mktemp(f"personas-{arch}"), base))
            for arch, base in (("llama", tiny_llama_base), ("qwen2", tiny_qwen2_base))}


async def _train_personas(root: Path, base: str) -> tuple[Path, Path]:
    from contextlib import aclosing

    from bot.config import Settings
    from bot.samples.generate import sample_path
    from bot.service import Mimicbot
    from bot.training.follow import follow
    from bot.training.jobs import TERMINAL
    from bot.training.pool import TrainingPool

    settings = Settings(mimicbot_data_dir=root / "data", mimicbot_models_dir=root / "models", _env_file=None)
    service = Mimicbot(settings)
    pool = TrainingPool(service.store, settings, workers=1)
    service.pool = pool
    try:
        await asyncio.to_thread(service.fetch_blocking, [str(sample_path("ada_bytes")), str(sample_path("grace_gardens"))])
        await pool.start()
        for model_id, hyper in PERSONAS.items():
            req = await service.build_request(model_id.split("-"), base_model=base, seed=1, max_steps=4, **hyper)
            job = await pool.submit(req, requested_by="test")
            async with asyncio.timeout(1200), aclosing(follow(service.store, job["id"])) as events:
                async for event in events:
                    if event["type"] == "state" and event["state"] in TERMINAL:
                        assert event["state"] == "succeeded", service.job(job["id"])["error"]
                        break
    finally:
        await pool.close()
        service.close()
    return settings.data_dir, settings.models_dir


def fixed_distribution_gpt2(tokenizer, probs: dict[int, float], **config) -> GPT2LMHeadModel:
    """A GPT-2 whose next-token distribution is `probs` at every step, whatever the input.

    The final layer norm outputs a constant vector of ones, so the logits are the row sums of the
    (untied) output matrix: row i is set to log(p_i) / n_embd, and every other token gets -50."""
    import torch

    model = random_gpt2(tokenizer, tie_word_embeddings=False, **config)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        logits = torch.full((len(tokenizer),), -50.0)
        for token, p in probs.items():
            logits[token] = torch.log(torch.tensor(p))
        model.lm_head.weight.copy_((logits / model.config.n_embd)[:, None].expand_as(model.lm_head.weight))
    return model


def single_id(tokenizer, text: str) -> int:
    ids = tokenizer.encode(text)
    assert len(ids) == 1, f"{text!r} is not one token: {ids}"
    return ids[0]


def tiny_fixed_model(base: Path, probs_by_text: dict[str, float]):
    """The tiny base's tokenizer with a fixed next-token distribution over the given (one-token) texts."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    return fixed_distribution_gpt2(tokenizer, {single_id(tokenizer, t): p for t, p in probs_by_text.items()})


def v1_index_dict(texts: list[str], salt: bytes = b"0" * 16) -> dict:
    """An index as mimicbot wrote it before coverage (version 1: 8-word runs with their positions)."""
    import hashlib

    def h(words):
        return int.from_bytes(hashlib.blake2b(" ".join(words).encode(), digest_size=8, key=salt).digest(), "big")

    exact, runs = [], []
    for post, text in enumerate(texts):
        words = normalise(text)
        exact.append(h(words))
        runs += [[h(words[p:p + 8]), post, p] for p in range(len(words) - 7)]
    return {"format": "mimicbot-anticopy", "version": 1, "min_run": 8, "salt": salt.hex(), "posts": len(texts),
            "exact": sorted(exact), "runs": sorted(runs)}
