"""Sampling from real (tiny) GPT-2 models: per-row stopping at newline / end-of-text, seeds, settings."""

from __future__ import annotations


import asyncio
import json
import re

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from typer.testing import CliRunner

from bot.cleaning import EOT
from bot.cli import _register, app
from bot.errors import UnknownModel, ValidationError
from bot.modelfolder import ANTICOPY_FILE
from bot.generation.sampling import first_line, sample, stop_token_ids
from bot.service import Mimicbot
from bot.training.tiny import ensure_tiny_base
from tests.kit.models import (fixed_distribution_gpt2, make_model_dir, random_gpt2, single_id, tiny_fixed_model,
                              v1_index_dict)

CORPUS = ["My dream is la la la la", "la la la\nla la", "Hello world, my dream is a compiler"] * 20


def byte_bpe_tokenizer(texts: list[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer, trained in milliseconds on `texts`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOT, bos_token=EOT, unk_token=EOT)


@pytest.fixture(scope="module")
def tokenizer():
    return byte_bpe_tokenizer(CORPUS)


class ForwardCounter:
    """Counts forward passes of a model (one per generated token with the KV cache)."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, *args):
        self.calls += 1


def test_stop_ids_cover_newline_tokens_and_eot(tokenizer):
    stop = set(stop_token_ids(tokenizer).tolist())
    assert tokenizer.eos_token_id in stop
    assert single_id(tokenizer, "\n") in stop
    assert single_id(tokenizer, " la") not in stop
    decoded = [tokenizer.decode([i]) for i in stop if i != tokenizer.eos_token_id]
    assert decoded and all(t.splitlines() != [t] for t in decoded)  # each holds a line break


@pytest.mark.parametrize("stop_text", ["\n", EOT])
def test_each_row_stops_at_its_first_newline_or_eot(tokenizer, stop_text):
    la, stop = single_id(tokenizer, " la"), single_id(tokenizer, stop_text)
    model = fixed_distribution_gpt2(tokenizer, {la: 0.75, stop: 0.25})
    counter = ForwardCounter(model)
    texts = sample(model, tokenizer, "My dream is", n=8, max_new_tokens=200, seed=3, top_p=1.0)
    assert len(texts) == 8
    assert all(re.fullmatch(r"My dream is( la)*", t) for t in texts), texts
    lengths = [t.count(" la") for t in texts]
    assert len(set(lengths)) > 1  # rows stopped at different steps
    # the batch ran exactly until its longest row emitted its stop token, not to max_new_tokens
    assert counter.calls == max(lengths) + 1 < 200


def test_a_newline_in_the_prompt_is_folded(tokenizer):
    la, newline = single_id(tokenizer, " la"), single_id(tokenizer, "\n")
    model = fixed_distribution_gpt2(tokenizer, {la: 0.5, newline: 0.5})
    texts = sample(model, tokenizer, "My dream is\nhidden", n=4, max_new_tokens=30, seed=0)
    assert None not in texts and all(t.startswith("My dream is hidden") and "\n" not in t for t in texts)  # newline folded in prompt


def test_first_line_cleans_the_decoded_row():
    assert first_line("My dream is  a\x00 cat\x0cmore") == "My dream is a cat"
    assert first_line("My dream is ok\r\nnext post") == "My dream is ok"
    assert first_line("") == ""


def test_seed_makes_sampling_deterministic(tokenizer):
    model = random_gpt2(tokenizer)
    a = sample(model, tokenizer, n=5, max_new_tokens=200, seed=42)
    b = sample(model, tokenizer, n=5, max_new_tokens=200, seed=42)
    c = sample(model, tokenizer, n=5, max_new_tokens=200, seed=43)
    assert a == b
    assert a != c
    whole = [t for t in a if t is not None]
    assert whole and all(t.startswith("My dream is") and EOT not in t and "\n" not in t for t in whole)


def test_sampling_leaves_the_global_rng_alone(tokenizer):
    model = random_gpt2(tokenizer)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    sample(model, tokenizer, n=2, max_new_tokens=5, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_top_k_one_is_greedy(tokenizer):
    la, newline = single_id(tokenizer, " la"), single_id(tokenizer, "\n")
    model = fixed_distribution_gpt2(tokenizer, {la: 0.9, newline: 0.1})
    # top_k=1 is greedy: always " la", never the newline, so every row runs out of budget: none is a post
    counter = ForwardCounter(model)
    texts = sample(model, tokenizer, n=3, max_new_tokens=7, top_k=1, seed=0)
    assert texts == [None] * 3 and counter.calls == 7


def test_a_row_that_runs_out_of_budget_is_never_returned_cut(tokenizer):
    la, newline = single_id(tokenizer, " la"), single_id(tokenizer, "\n")
    model = fixed_distribution_gpt2(tokenizer, {la: 0.9, newline: 0.1})
    texts = sample(model, tokenizer, n=32, max_new_tokens=10, top_p=1.0, seed=4)
    whole = [t for t in texts if t is not None]
    assert 0 < len(whole) < 32  # some rows ended, some ran out
    # a returned post ended on its own: it has fewer than the 10 new tokens of a cut row
    assert all(re.fullmatch(r"My dream is( la){0,9}", t) for t in whole), whole


def test_the_recipe_budget_counts_eot_and_the_opener(tokenizer):
    la = single_id(tokenizer, " la")
    model = fixed_distribution_gpt2(tokenizer, {la: 1.0})  # never ends: runs to the budget
    counter = ForwardCounter(model)
    assert sample(model, tokenizer, "My dream is", n=1, seed=0) == [None]
    prompt_tokens = len(tokenizer.encode(EOT + "My dream is"))
    assert counter.calls == 160 - prompt_tokens
    counter.calls = 0
    sample(model, tokenizer, "", n=1, seed=0)  # the start-of-post token alone: 159 new tokens
    assert counter.calls == 159


def test_min_length_holds_back_end_of_text(tokenizer):
    la, eot = single_id(tokenizer, " la"), tokenizer.eos_token_id
    model = fixed_distribution_gpt2(tokenizer, {la: 0.5, eot: 0.5})
    texts = sample(model, tokenizer, "My dream is", n=16, seed=2, top_p=1.0)
    prompt_tokens = len(tokenizer.encode(EOT + "My dream is"))
    assert None not in texts
    # end-of-text is impossible before 10 tokens in all: at least 10 - prompt_tokens new words each
    assert min(t.count(" la") for t in texts) == 10 - prompt_tokens


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"temperature": 0}, "temperature must be above 0"),
    ({"top_p": 0}, "top_p must be in"),
    ({"top_p": 1.5}, "top_p must be in"),
    ({"top_k": -1}, "top_k must be 0"),
    ({"n": 0}, "n must be between"),
    ({"max_new_tokens": 0}, "max_new_tokens must be between"),
])
def test_bad_settings_are_refused(tokenizer, kwargs, message):
    model = random_gpt2(tokenizer)
    with pytest.raises(ValidationError, match=message):
        sample(model, tokenizer, **kwargs)


# -- model directories, the service's generate, the CLI -----------------------------------------------


@pytest.fixture
def bot(settings):
    service = Mimicbot(settings)
    yield service
    service.close()


def test_service_generate_refuses_copies_and_resamples(bot, settings, tiny_base):
    model = tiny_fixed_model(tiny_base, {" coffee": 0.8, "\n": 0.2})
    make_model_dir(settings.models_dir, "ada", tiny_base, model=model,
                   training_texts=["My dream is coffee", "My dream is coffee coffee coffee"])
    result = bot.generate("ada", n=3, seed=5, top_p=1.0, max_new_tokens=12)
    refused = {"My dream is", "My dream is coffee", "My dream is coffee coffee coffee"}
    assert len(result.texts) == 3 and len(set(result.texts)) == 3
    assert all(re.fullmatch(r"My dream is( coffee)+", t) and t not in refused for t in result.texts)
    assert result.rejected == result.attempts - 3 > 0
    assert "exact copy of a training post" in result.reasons
    assert result.settings == {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "max_length": 160, "min_length": 10,
                               "max_new_tokens": 12, "seed": 5}
    assert bot.generate("ada", n=3, seed=5, top_p=1.0, max_new_tokens=12).texts == result.texts


def test_generation_gives_up_after_its_budget(bot, settings, tiny_base):
    # greedy: always the same text, which is a training post
    model = tiny_fixed_model(tiny_base, {" coffee": 0.9, "\n": 0.1})
    make_model_dir(settings.models_dir, "ada", tiny_base, model=model,
                   training_texts=["My dream is coffee coffee coffee"], generation={"top_k": 1, "max_new_tokens": 3})
    result = bot.generate("ada", n=5)
    assert result.texts == []
    # the first round with its spares (30 % more), then 3 rounds of twice the shortfall
    assert result.attempts == int(5 * 1.3) + 10 + 10 + 10
    assert result.rejected == result.attempts
    assert result.settings["top_k"] == 1 and result.settings["max_new_tokens"] == 3  # from generation_config.json


def test_model_max_length_counts_the_prompt(bot, settings, tiny_base):
    model = tiny_fixed_model(tiny_base, {" coffee": 0.7, "\n": 0.3})
    make_model_dir(settings.models_dir, "ada", tiny_base, model=model, generation={"max_length": 10, "min_length": 0})
    result = bot.generate("ada", n=8, seed=0, top_p=1.0)
    prompt_tokens = 1 + 3  # <|endoftext|> My dream is
    assert result.settings["max_length"] == 10 and "max_new_tokens" not in result.settings
    # posts that end within 10 - 4 new tokens are kept; rows that run out are refused, never cut
    assert result.texts and all(re.fullmatch(r"My dream is( coffee){1,%d}" % (10 - prompt_tokens - 1), t)
                                for t in result.texts), result.texts
    assert "did not end within the token budget" in result.reasons


async def test_agenerate_runs_off_the_event_loop(bot, settings, tiny_base):
    make_model_dir(settings.models_dir, "ada", tiny_base)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    result = await bot.agenerate("ada", n=2, seed=1, max_new_tokens=40)
    task.cancel()
    assert len(result.texts) + result.rejected == result.attempts
    assert ticks > 1  # the loop kept running while the model loaded and sampled


def test_unknown_model_suggests_close_ids(bot, settings, tiny_base):
    make_model_dir(settings.models_dir, "ada_bytes", tiny_base)
    with pytest.raises(UnknownModel, match="no model 'ada_byte'; did you mean ada_bytes"):
        bot.generate("ada_byte")
    with pytest.raises(UnknownModel, match="models: ada_bytes"):
        bot.generate("zzz")
    with pytest.raises(UnknownModel):
        bot.generate("../ada_bytes")


def cli(*args: str, input: str | None = None):
    _register()
    return CliRunner().invoke(app, list(args), input=input)


def test_cli_generate_json(settings, tiny_base, monkeypatch):
    make_model_dir(settings.models_dir, "ada", tiny_base, training_texts=["My dream is coffee"])
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(settings.models_dir))
    args = ["generate", "ada", "--prompt", "Hot take:", "-n", "3", "--seed", "7", "--max-new-tokens", "20",
            "--temperature", "0.9", "--top-k", "40", "--json"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["model_id"] == "ada" and data["prompt"] == "Hot take:"
    assert len(data["texts"]) + data["rejected"] == data["attempts"] >= 3
    assert all(t.startswith("Hot take:") for t in data["texts"])
    assert data["settings"] == {"temperature": 0.9, "top_p": 0.95, "top_k": 40, "max_length": 160, "min_length": 10,
                                "max_new_tokens": 20, "seed": 7}
    assert json.loads(cli(*args).stdout)["texts"] == data["texts"]


def test_cli_generate_errors_are_one_line(settings, tiny_base, monkeypatch):
    make_model_dir(settings.models_dir, "ada", tiny_base)
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(settings.models_dir))
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    result = cli("generate", "adaa")
    assert result.exit_code == 2
    assert "no model 'adaa'; did you mean ada?" in result.stderr
    result = cli("generate", "ada", "--temperature", "0")
    assert result.exit_code == 2 and "temperature must be above 0" in result.stderr



@pytest.mark.parametrize(("args", "message"), [
    (["[/x]"], "no model '[/x]'"),  # console markup in a name is shown, not parsed
    (["ada", "--temperature", "inf"], "temperature must be above 0 and finite"),
    (["ada", "--temperature", "nan"], "temperature must be above 0 and finite"),
    (["ada", "-n", "100000"], "n must be between 1 and 64"),
    (["ada", "--prompt", "a\x00b"], "invisible control character (U+0000)"),
    (["ada", "--prompt", "a\u202eb"], "invisible control character (U+202E)"),
    (["ada", "--prompt", "x" * 1001], "the prompt must be 1 to 1000 characters"),
    (["ada", "--prompt", " \u200b "], "the prompt must be 1 to 1000 characters"),
])
def test_cli_generate_refuses_hostile_settings(settings, tiny_base, monkeypatch, args, message):
    """The service's rules, shared with Discord: one line on stderr, exit 2, no traceback."""
    make_model_dir(settings.models_dir, "ada", tiny_base)
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(settings.models_dir))
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    result = cli("generate", *args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert message in line and "Traceback" not in result.output


# -- the model store and `mimicbot models` --------------------------------------------------------------


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("MIMICBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MIMICBOT_MODELS_DIR", str(settings.models_dir))
    return settings


def test_models_list_skips_scratch_folders(bot, settings, tiny_base):
    make_model_dir(settings.models_dir, "ada", tiny_base)
    make_model_dir(settings.models_dir, "bob", tiny_base, record={"display_name": "Bob"})
    (settings.models_dir / ".work" / "job-1").mkdir(parents=True)
    (settings.models_dir / "half").mkdir()  # no config.json: not a model
    ensure_tiny_base(settings.models_dir)  # models/_base/tiny is a base, not a model
    rows = bot.models()
    assert [r["id"] for r in rows] == ["ada", "bob"]
    ada, bob = rows
    assert ada["display_name"] == "Ada" and ada["accounts"] == ["ada"] and ada["perplexity_after"] == 12.5
    assert ada["created_at"] == "2025-12-06T18:20:30+00:00" and ada["size_mb"] > 1
    assert bob["display_name"] == "Bob" and bob["accounts"] == [] and bob["perplexity_after"] is None


def test_remove_model_is_atomic_and_forgets_the_cached_copy(bot, settings, tiny_base):
    make_model_dir(settings.models_dir, "ada", tiny_base)
    bot.generate("ada", n=1, seed=0, max_new_tokens=5)
    assert "ada" in bot.cache
    bot.remove_model("ada")
    assert "ada" not in bot.cache
    assert list(settings.models_dir.iterdir()) == []  # no trash left behind
    with pytest.raises(UnknownModel):
        bot.generate("ada")
    with pytest.raises(UnknownModel):
        bot.remove_model("ada")


def test_cli_models_list_show_card_rm(cli_env, tiny_base):
    path = make_model_dir(cli_env.models_dir, "ada", tiny_base)
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [m["id"] for m in listed] == ["ada"]
    table = cli("models", "list")
    assert table.exit_code == 0 and "ada" in table.stdout and "12.50" in table.stdout

    shown = json.loads(cli("models", "show", "ada", "--json").stdout)
    assert shown["path"] == str(path) and shown["training"]["display_name"] == "Ada"
    assert shown["files"]["anticopy"] == str(path / ANTICOPY_FILE)
    assert "card" not in shown["files"]

    card = cli("models", "card", "ada")
    assert card.exit_code == 0, card.output
    assert card.stdout.strip() == str(path / "README.md")
    assert "@ada" in (path / "README.md").read_text()
    assert json.loads(cli("models", "show", "ada", "--json").stdout)["files"]["card"] == str(path / "README.md")

    refused = cli("models", "rm", "ada", input="n\n")
    assert refused.exit_code == 1 and path.exists()
    removed = cli("models", "rm", "ada", "--yes")
    assert removed.exit_code == 0 and not path.exists()
    missing = cli("models", "show", "ada")
    assert missing.exit_code == 2 and "no model 'ada'; no model is trained yet" in missing.stderr


def test_cli_models_list_when_empty(cli_env):
    result = cli("models", "list")
    assert result.exit_code == 0 and "no models yet" in result.stderr
    assert json.loads(cli("models", "list", "--json").stdout) == []


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_offline(cli_env):
    result = cli("demo", "--epochs", "1", "--max-steps", "3", "--seed", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Tweets kept" in out and "319" in out  # the stats table of the sample archive
    texts = re.findall(r"^\d\. (My dream is.*)$", out, re.M)
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [m["id"] for m in listed] == ["ada_bytes"]
    files = json.loads(cli("models", "show", "ada_bytes", "--json").stdout)["files"]
    for name in ("card", "predictions", "loss"):
        assert f"{files[name]}" in out.replace("\n", "")
    refused, drawn = map(int, re.search(r"(\d+) of (\d+) samples refused", out).groups())
    assert len(texts) == 5 and refused == drawn - 5  # refused ones (unfinished rows, here) were drawn again


def test_long_requests_fit_the_model_context(tokenizer):
    la = single_id(tokenizer, " la")
    model = fixed_distribution_gpt2(tokenizer, {la: 1.0}, n_positions=64)  # never stops on its own
    counter = ForwardCounter(model)
    texts = sample(model, tokenizer, "My dream is", n=1, max_new_tokens=1000, seed=0)
    prompt_tokens = len(tokenizer.encode(EOT + "My dream is"))
    assert texts == [None] and counter.calls == 64 - prompt_tokens  # ran to the context's end: not a post
    with pytest.raises(ValidationError, match="this model reads at most 63"):
        sample(model, tokenizer, "la " * 100, n=1)


def test_a_literal_eot_in_the_prompt_stays_text(tokenizer):
    la, newline = single_id(tokenizer, " la"), single_id(tokenizer, "\n")
    model = fixed_distribution_gpt2(tokenizer, {la: 0.5, newline: 0.5})
    texts = sample(model, tokenizer, f"My {EOT} dream", n=2, max_new_tokens=30, seed=0)
    assert None not in texts and all(t.startswith(f"My {EOT} dream") for t in texts)


def test_an_old_anticopy_index_is_rebuilt_from_the_stored_posts_on_load(bot, settings, tiny_base):
    from bot.samples.generate import sample_path

    bot.fetch_blocking([str(sample_path("ada_bytes"))])
    texts = bot.store.kept_texts(bot.store.get_account("x", "ada_bytes")["id"])
    record = {"model_id": "ada", "accounts": [{"handle": "ada_bytes", "network": "x"}]}
    path = make_model_dir(settings.models_dir, "ada", tiny_base, record=record)
    (path / ANTICOPY_FILE).write_text(json.dumps(v1_index_dict(texts[:3])))
    orphan = make_model_dir(settings.models_dir, "orphan", tiny_base,
                            record={"model_id": "orphan", "accounts": [{"handle": "nobody", "network": "x"}]})
    (orphan / ANTICOPY_FILE).write_text(json.dumps(v1_index_dict(texts[:3])))

    index = bot.cache.get("ada").anticopy
    assert index.version == 2 and index.posts == len(texts)  # rebuilt from every stored post, and saved
    saved = json.loads((path / ANTICOPY_FILE).read_text())
    assert saved["version"] == 2 and not any(w in (path / ANTICOPY_FILE).read_text() for w in ("coffee", "dream"))
    assert index.check(texts[-1]) is not None
    old = bot.cache.get("orphan").anticopy  # its posts are not stored: used as it is
    assert old.version == 1 and old.check(texts[0]) is not None
    assert json.loads((orphan / ANTICOPY_FILE).read_text())["version"] == 1


def test_a_reply_reads_its_context_and_a_plain_post_reads_none(tokenizer):
    """The context (a reply's parent) reaches the model before the post; without it the input is the plain
    post's, unchanged. A reading counter sees exactly the tokens the model is fed first."""
    model = random_gpt2(tokenizer)
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"][0].tolist()),
                                             with_kwargs=True)
    sample(model, tokenizer, "", n=1, max_new_tokens=2, seed=0, context="la la\nla")
    sample(model, tokenizer, "", n=1, max_new_tokens=2, seed=0)
    handle.remove()
    eot = tokenizer.eos_token_id
    context = tokenizer("la la la", add_special_tokens=False)["input_ids"]  # folded onto one line
    assert seen[0] == [eot, *context, eot]
    assert seen[2] == [eot]  # the plain post's first step reads end-of-text alone
    with_context = sample(model, tokenizer, "", n=8, max_new_tokens=200, seed=1, context="Hello world, la la")
    assert with_context != sample(model, tokenizer, "", n=8, max_new_tokens=200, seed=1)  # same seed: it is read


def test_a_message_longer_than_the_model_reads_keeps_its_last_words(tokenizer):
    """A long message (an X note of thousands of characters) is cut to its last tokens, so that message and post
    fit the model's context with the post's whole budget: the reply neither fails nor loses its budget."""
    model = random_gpt2(tokenizer)  # reads at most 256 tokens
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"][0].tolist()),
                                             with_kwargs=True)
    message = " ".join(f"la{i % 7} word{i % 5}" for i in range(300))
    posts = sample(model, tokenizer, "", n=2, seed=0, context=message)
    handle.remove()
    eot = tokenizer.eos_token_id
    whole = tokenizer(message, add_special_tokens=False)["input_ids"]
    assert len(whole) > 256
    room = 256 - 160  # the recipe's budget of 160 tokens (end-of-text included) is left to the post
    assert seen[0] == [eot, *whole[-(room - 1):], eot]
    assert len(posts) == 2
    # a message that fits is read whole
    seen.clear()
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"][0].tolist()),
                                             with_kwargs=True)
    sample(model, tokenizer, "", n=1, max_new_tokens=2, seed=0, context="la la la")
    handle.remove()
    assert seen[0] == [eot, *tokenizer("la la la", add_special_tokens=False)["input_ids"], eot]
