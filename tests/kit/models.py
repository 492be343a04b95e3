"""Models for tests: the tiny base (built once per session, offline), random GPT-2s, model folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from bot.generation.anticopy import build_index
from bot.modelfolder import ANTICOPY_FILE, GENERATION_FILE, TRAINING_FILE


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    """The offline base model, as a local folder: the tiny tokenizer (trained on the bundled samples) and a
    random two-layer GPT-2. Built once for the whole session."""
    from bot.training.tiny import ensure_tiny_base

    return str(ensure_tiny_base(tmp_path_factory.mktemp("base")))


def random_gpt2(tokenizer, seed: int = 0, **config) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    sizes = {"n_positions": 256, "n_embd": 32, "n_layer": 2, "n_head": 2, **config}
    cfg = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                     eos_token_id=tokenizer.eos_token_id, **sizes)
    return GPT2LMHeadModel(cfg).eval()


def make_model_dir(models_dir: Path, model_id: str, base: Path, *, model=None, training_texts=(),
                   generation: dict | None = None, record: dict | None = None) -> Path:
    """A model directory as the trainer publishes it: weights, tokenizer, generation config, anti-copy
    index and training.json."""
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
