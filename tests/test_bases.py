"""Modern bases and LoRA personas (issue 13): any causal LM as a base, adapters instead of whole models, and many
personas served over one base in memory.

The slow tests use tiny random Llama and Qwen2 bases built here with their own tokenizers (tests/kit/models.py),
and personas trained once per session through the real training pool (a child process per job), full and LoRA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from bot import modelfolder
from bot.config import Settings
from bot.generation.framing import IGNORE, Framing, context_length
from bot.training.card import render_card
from bot.training.spec import LORA_LR, LORA_RANK

ARCHS = ("llama", "qwen2")
FULL, LORA, PAIR = "ada_bytes", "grace_gardens", "ada_bytes-grace_gardens"  # tests/kit/models.py PERSONAS


# -- framing and context: no model ---------------------------------------------------------------------------


def test_gpt2_framing_is_the_recipes_stream():
    """No distinct beginning token: EOT + post + EOT + post + EOT, a parent read (not learned) before its reply."""
    gpt2 = Framing(end=0)
    assert gpt2.stream([[5, 6], [7]]) == ([0, 5, 6, 0, 7, 0], [0, 5, 6, 0, 7, 0])
    ids, labels = gpt2.stream([[5, 6], [7, 8]], [[], [3, 4]])
    assert ids == [0, 5, 6, 0, 3, 4, 0, 7, 8, 0]
    assert labels == [0, 5, 6, 0, IGNORE, IGNORE, IGNORE, 7, 8, 0]
    assert gpt2.prompt([9]) == [0, 9] and gpt2.prompt([9], [3]) == [0, 3, 0, 9]
    assert gpt2.stops == [0]


def test_a_beginning_token_frames_each_post():
    """BOS + post + EOS for each post; the prompt is what preceded every trained post: BOS + opener."""
    llama = Framing(end=2, start=1)
    ids, labels = llama.stream([[5, 6], [7, 8]], [[], [3]])
    assert ids == [1, 5, 6, 2, 1, 3, 2, 1, 7, 8, 2]
    assert labels == [1, 5, 6, 2, IGNORE, IGNORE, IGNORE, 1, 7, 8, 2]
    assert llama.prompt([9]) == [1, 9] and llama.prompt([9], [3]) == [1, 3, 2, 1, 9]
    assert llama.stops == [2, 1]  # a new post starting ends the sample too


def test_the_context_comes_from_whichever_field_the_architecture_uses():
    assert context_length({"n_positions": 1024}) == 1024  # GPT-2
    assert context_length({"max_position_embeddings": 8192, "model_type": "llama"}) == 8192  # Llama, Qwen2, Mistral
    assert context_length({"n_ctx": 2048}) == 2048
    assert context_length({"hidden_size": 64}) is None


def test_an_adapter_folder_is_a_model_that_names_its_base(tmp_path):
    folder = tmp_path / "persona"
    folder.mkdir()
    assert not modelfolder.is_model(folder) and modelfolder.stamp(folder) is None
    (folder / modelfolder.ADAPTER_FILE).write_text(json.dumps({"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M"}))
    assert modelfolder.is_model(folder) and modelfolder.is_adapter(folder)
    assert modelfolder.adapter_base(folder) == "HuggingFaceTB/SmolLM2-135M"
    assert modelfolder.stamp(folder) is not None
    (folder / modelfolder.CONFIG_FILE).write_text("{}")  # a whole model is not an adapter
    assert not modelfolder.is_adapter(folder) and modelfolder.adapter_base(folder) is None


def test_an_adapters_card_names_its_hub_base_and_peft():
    info = {"model_id": "ada", "adapter": "lora", "base_model": "HuggingFaceTB/SmolLM2-135M", "base_model_kind": "hub",
            "architecture": "llama", "hyperparameters": {"lora_rank": 8},
            "framing": {"start": "<|im_start|>", "end": "<|endoftext|>"}, "accounts": [{"handle": "ada"}]}
    card = render_card(info)
    assert "base_model: HuggingFaceTB/SmolLM2-135M\nlibrary_name: peft\n" in card
    assert "a LoRA adapter over `HuggingFaceTB/SmolLM2-135M`" in card
    assert "[Llama](https://huggingface.co/HuggingFaceTB/SmolLM2-135M)" in card
    assert "LoRA adapter of rank 8" in card
    assert "each one begun by `<|im_start|>` and ended by `<|endoftext|>`" in card
    full = render_card({**info, "adapter": None})
    assert "base_model:" not in full and "peft" not in full  # a full fine-tune keeps huggingtweets' front matter


# -- personas trained through the pool -------------------------------------------------------------------------


def settings_for(modern_personas, arch: str, **extra) -> Settings:
    data_dir, models_dir = modern_personas[arch]
    return Settings(mimicbot_data_dir=data_dir, mimicbot_models_dir=models_dir, _env_file=None, **extra)


@pytest.mark.parametrize("arch", ARCHS)
def test_full_and_lora_personas_are_trained_over_a_modern_base(modern_personas, arch):
    from bot.service import Mimicbot

    bot = Mimicbot(settings_for(modern_personas, arch))
    try:
        full, lora, pair = (bot.model(m) for m in (FULL, LORA, PAIR))
    finally:
        bot.close()
    base = full["training"]["base_model"]
    assert Path(base).name == f"tiny-{arch}"
    # the full fine-tune: a whole model of that architecture, its own tokens framing the posts
    record = full["training"]
    assert full["adapter"] is None and record["architecture"] == arch and record["adapter"] is None
    start, end = {"llama": ("<|begin_of_text|>", "<|end_of_text|>"), "qwen2": ("<|im_start|>", "<|im_end|>")}[arch]
    assert record["framing"] == {"start": start, "end": end}
    assert record["hyperparameters"]["block_size"] <= 256  # the context, from max_position_embeddings
    assert record["hyperparameters"]["lr"] == 1.372e-4
    path = Path(full["path"])
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    # the LoRA personas: an adapter (no weights of the base), naming its base by path
    for persona, rank in ((lora, LORA_RANK), (pair, 4)):
        folder = Path(persona["path"])
        assert persona["adapter"] == "lora" and persona["base_model"] == str(Path(base).resolve())
        assert not (folder / "config.json").exists() and (folder / "adapter_model.safetensors").is_file()
        with safe_open(folder / "adapter_model.safetensors", "pt") as weights:  # none of the base's (its embedding)
            assert all("lora_A" in k or "lora_B" in k for k in weights.keys()), list(weights.keys())
        assert {"tokenizer.json", "generation_config.json", "training.json", "anticopy.json", "loss.png",
                "predictions.png", "README.md"} <= {p.name for p in folder.iterdir()}
        hyper = persona["training"]["hyperparameters"]
        assert hyper["lora_rank"] == rank and hyper["lr"] == LORA_LR
        assert "lm_head" in hyper["lora_targets"]  # the output layer adapted too (bench/README.md, "Quality guard")
        assert persona["training"]["trainable_parameters"] < record["trainable_parameters"] / 4
        assert persona["size_mb"] < full["size_mb"]
        card = (folder / "README.md").read_text()
        assert f"a LoRA adapter over `{persona['base_model']}`" in card and "library_name: peft" in card
        assert f"each one begun by `{start}` and ended by `{end}`" in card
        config = json.loads((folder / "generation_config.json").read_text())
        assert config["eos_token_id"] != config["bos_token_id"] and config["do_sample"] is True
    assert pair["training"]["kind"] == "CYBORG"
    full_card = (path / "README.md").read_text()
    assert f"the {'Llama' if arch == 'llama' else 'Qwen2'} model in the local folder `tiny-{arch}`" in full_card


@pytest.mark.parametrize("arch", ARCHS)
def test_each_persona_generates_through_the_cache_with_the_copy_check(modern_personas, arch):
    """Whole posts from the cache for the full model and both adapters; a training post is refused as a copy;
    the two LoRA personas share one base in memory."""
    from bot.generation import refusal
    from bot.service import Mimicbot

    bot = Mimicbot(settings_for(modern_personas, arch))
    try:
        for model_id in (FULL, LORA, PAIR):
            result = bot.generate(model_id, "My dream is", n=3, seed=3)
            assert result.attempts >= 3 and len(result.texts) + result.rejected == result.attempts
            assert all(t.startswith("My dream is") and "\n" not in t for t in result.texts)
        texts = _posts(bot, "grace_gardens")
        copied = next(t for t in texts if len(t.split()) >= 8)
        assert refusal(bot.cache.get(LORA), "", copied, []) is not None
        stats = bot.cache.stats()
        assert stats["count"] == 3 and stats["bases"] == 1  # the full model, and two adapters over one base
        assert 0 < stats["base_mb"] < stats["mb"]
    finally:
        bot.close()


def _posts(bot, handle: str) -> list[str]:
    """The account's kept posts: what the model trained on."""
    return bot.store.kept_texts(bot.store.find_accounts(handle)[0]["id"])


@pytest.mark.parametrize("arch", ARCHS)
def test_pipeline_loads_every_persona(modern_personas, arch):
    """`transformers.pipeline("text-generation", model=DIR)` for the whole model and for an adapter (peft)."""
    from transformers import pipeline

    models_dir = modern_personas[arch][1]
    for model_id in (FULL, LORA):
        generator = pipeline("text-generation", model=str(models_dir / model_id))
        out = generator("My dream is", max_new_tokens=5, do_sample=True)
        assert out[0]["generated_text"].startswith("My dream is")
        assert generator.model.config.model_type == arch
    adapters = getattr(generator.model, "peft_config", {})
    assert len(adapters) == 1  # the adapter was attached to its base


def test_a_switch_on_the_shared_base_computes_what_a_standalone_persona_does(modern_personas):
    """Two LoRA personas over one Llama base: after switching back and forth, each persona's logits equal those of
    its adapter loaded alone over a fresh copy of the base, and differ from the other persona's. Evicting both
    releases the base."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from bot.generation.cache import ModelCache
    from bot.generation.models import ModelStore
    from bot.generation.sampling import LOCK

    models_dir = modern_personas["llama"][1]
    store = ModelStore(models_dir, dtype="fp32")
    cache = ModelCache(3, 10_000, store.load, store.stamp)
    ids = torch.tensor([[0, 5, 17, 33, 8, 90]])

    def logits(loaded):
        with LOCK, torch.no_grad():
            loaded.activate()
            return loaded.model(input_ids=ids).logits

    a, b = cache.get(LORA), cache.get(PAIR)
    assert a.model is b.model and len(store.shared_bases()) == 1
    shared_a, shared_b, shared_a_again = logits(a), logits(b), logits(a)
    base = AutoModelForCausalLM.from_pretrained(modelfolder.adapter_base(models_dir / LORA), dtype=torch.float32)
    alone = PeftModel.from_pretrained(base, str(models_dir / LORA)).eval()
    with torch.no_grad():
        expected = alone(input_ids=ids).logits
    torch.testing.assert_close(shared_a, expected)
    torch.testing.assert_close(shared_a_again, expected)
    assert not torch.allclose(shared_a, shared_b)
    stats = cache.stats()
    assert stats["bases"] == 1 and stats["mb"] > stats["base_mb"] > 0
    cache.evict(LORA)
    assert len(store.shared_bases()) == 1 and LORA not in cache  # the pair still uses the base
    torch.testing.assert_close(logits(b), shared_b)
    cache.get(FULL)
    cache.evict(PAIR)
    assert len(store.shared_bases()) == 0 and cache.stats()["bases"] == 0  # no cached persona uses it: released


def test_models_show_json_reports_the_adapter_and_its_base(modern_personas):
    settings = settings_for(modern_personas, "qwen2")
    env = {**os.environ, "MIMICBOT_DATA_DIR": str(settings.data_dir), "MIMICBOT_MODELS_DIR": str(settings.models_dir)}
    res = subprocess.run([sys.executable, "-m", "bot", "models", "show", LORA, "--json"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["adapter"] == "lora" and Path(shown["base_model"]).name == "tiny-qwen2"
    assert shown["files"]["adapter"].endswith("adapter_model.safetensors")


def test_models_push_sends_an_adapter_repository_whose_card_names_the_base(modern_personas):
    """`models push` of a LoRA persona: the adapter (no base weights), its tokenizer and generation settings, and a
    card that says it is a peft adapter over its base, to the stand-in hub (tests/fakes/hub_server.py)."""
    pytest.importorskip("huggingface_hub")
    from tests.fakes.hub_server import FakeHub

    settings = settings_for(modern_personas, "llama")
    token = "hf_test_adapter_token_SECRET"
    with FakeHub(token) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1",
               "MIMICBOT_DATA_DIR": str(settings.data_dir), "MIMICBOT_MODELS_DIR": str(settings.models_dir)}
        res = subprocess.run([sys.executable, "-m", "bot", "models", "push", LORA, "--repo", "alice/grace-lora",
                              "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        repo = hub.repos["alice/grace-lora"]
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "generation_config.json",
            "training.json", "README.md"} <= set(repo.files)
    assert "config.json" not in repo.files and "model.safetensors" not in repo.files
    base = json.loads(repo.files["adapter_config.json"])["base_model_name_or_path"]
    card = repo.files["README.md"].decode()
    assert Path(base).name == "tiny-llama" and f"a LoRA adapter over `{base}`" in card
    assert "library_name: peft" in card and "- lora" in card


@pytest.mark.parametrize("arch", ARCHS)
def test_the_stop_rule_and_prompt_use_the_bases_own_tokens(arch, tiny_llama_base, tiny_qwen2_base):
    """A sample ends at a line break, the end token or a new beginning token; the prompt starts with the beginning
    token once, whether or not the tokenizer adds it by itself; pipeline() gets the matching prefix."""
    from transformers import AutoTokenizer

    from bot.generation.sampling import _prompt_ids, stop_token_ids
    from bot.training.trainer import pipeline_prefix

    # both bases named as arguments (not looked up by name): conftest marks a test that builds a model as slow
    tokenizer = AutoTokenizer.from_pretrained({"llama": tiny_llama_base, "qwen2": tiny_qwen2_base}[arch])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert bos != eos and tokenizer.eos_token != "<|endoftext|>"
    stops = stop_token_ids(tokenizer).tolist()
    assert eos in stops and bos in stops and tokenizer.convert_tokens_to_ids("Ċ") in stops  # "\n" in byte-level BPE
    ids = _prompt_ids(tokenizer, "My dream is")
    assert ids[0] == bos and ids.count(bos) == 1 and tokenizer.decode(ids[1:]) == "My dream is"
    framing = Framing.of(tokenizer)
    prefix = pipeline_prefix(tokenizer, framing)
    # Llama's tokenizer adds its beginning token itself: no prefix; Qwen2's does not: the prefix is that token
    assert prefix == ("" if arch == "llama" else tokenizer.bos_token)
    assert tokenizer(prefix + "My dream is")["input_ids"] == ids
