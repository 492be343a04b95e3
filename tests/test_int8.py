"""The int8 generation path (bot/generation/ct2.py, CTranslate2): conversion into the model folder, the cache
serving it, the same stop rule, budget, min_length, seeds and copy check as the transformers path, the background
conversion of older models, and the fallback when CTranslate2 is not installed."""

from __future__ import annotations

import json
import re
import sys

import pytest

from bot.config import Settings
from bot.generation import ct2
from bot.generation.models import ModelStore
from bot.modelfolder import INT8_DIR
from bot.service import Mimicbot
from tests.kit.models import make_model_dir, random_gpt2
from tests.kit.models import tiny_fixed_model

pytest.importorskip("ctranslate2")  # the `int8` extra: `make install` installs it, so the suite runs these

pytestmark = pytest.mark.slow


@pytest.fixture
def int8_settings(settings) -> Settings:
    return settings.model_copy(update={"mimicbot_int8": "auto"})


@pytest.fixture(autouse=True)
def _convert_at_normal_priority(monkeypatch):
    # the conversion child runs at niceness 10; on a test machine busy with other work it would wait for minutes
    monkeypatch.setenv("MIMICBOT_INT8_NICENESS", "0")


@pytest.fixture
def bot(int8_settings):
    service = Mimicbot(int8_settings)
    yield service
    service.close()


def fixed_model_dir(settings, base, model_id, probs, convert=True, **kwargs):
    path = make_model_dir(settings.models_dir, model_id, base, model=tiny_fixed_model(base, probs), **kwargs)
    if convert:
        ct2.convert(path)
    return path


def test_conversion_writes_a_checked_copy_beside_the_transformers_files(settings, tiny_base):
    from transformers import pipeline

    path = make_model_dir(settings.models_dir, "ada", tiny_base)
    assert not ct2.ready(path)
    ct2.convert(path)
    assert ct2.ready(path)
    assert (path / INT8_DIR / "model.bin").is_file()
    assert [p.name for p in path.iterdir() if p.name.startswith(".")] == []  # no scratch folder left behind
    marker = json.loads((path / INT8_DIR / ct2.MARKER).read_text())
    assert marker["quantization"] == "int8" and marker["source"] == ct2.fingerprint(path)
    # the folder is still a transformers model folder
    assert pipeline("text-generation", model=str(path), device="cpu").model.config.n_layer == 2
    assert ModelStore(settings.models_dir).ids() == ["ada"]  # the subfolder is not a model
    from bot.hub import model_files

    (path / "README.md").write_text("card")
    files = model_files(path)
    assert "config.json" in files and not any(f.startswith(INT8_DIR) for f in files)  # not pushed: made again

    # weights replaced in place (not through a publish): the copy no longer matches and is not used
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes())
    import os

    os.utime(weights, (1, 1))
    assert not ct2.ready(path)
    ct2.convert(path)  # converted again, the old copy replaced
    assert ct2.ready(path)


def test_the_cache_serves_a_converted_model_from_int8_in_less_than_half_the_fp32_memory(int8_settings, tiny_base):
    from transformers import AutoTokenizer

    model = random_gpt2(AutoTokenizer.from_pretrained(tiny_base), n_embd=256, n_layer=4)
    ct2.convert(make_model_dir(int8_settings.models_dir, "ada", tiny_base, model=model))
    store = ModelStore(int8_settings.models_dir, int8=True)
    loaded = store.load("ada")
    assert loaded.engine is not None and loaded.model is None
    fp32 = ModelStore(int8_settings.models_dir, dtype="fp32").load("ada")
    assert fp32.engine is None and loaded.nbytes < fp32.nbytes / 2
    assert store.converter.wait(0)  # nothing was queued: the copy was there


def test_same_seed_same_texts(bot, int8_settings, tiny_base):
    fixed_model_dir(int8_settings, tiny_base, "ada", {" coffee": 0.3, " tea": 0.3, " la": 0.3, "\n": 0.1})
    engine = bot.cache.get("ada").engine
    assert engine is not None
    first = bot.generate("ada", n=6, seed=11, top_p=1.0, max_new_tokens=30)
    bot.generate("ada", n=6, top_p=1.0, max_new_tokens=30)  # an unseeded call between: no effect on seeded ones
    again = bot.generate("ada", n=6, seed=11, top_p=1.0, max_new_tokens=30)
    other = bot.generate("ada", n=6, seed=12, top_p=1.0, max_new_tokens=30)
    assert len(first.texts) == 6 and first.texts == again.texts
    assert other.texts != first.texts
    unseeded = [tuple(bot.generate("ada", n=6, top_p=1.0, max_new_tokens=30).texts) for _ in range(2)]
    assert unseeded[0] != unseeded[1]


def test_rows_stop_at_a_line_break_and_rows_out_of_budget_are_never_returned(int8_settings, tiny_base):
    from transformers import AutoTokenizer

    path = fixed_model_dir(int8_settings, tiny_base, "ada", {" la": 0.9, "\n": 0.1})
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = ct2.Int8Engine(path)
    texts = engine.sample(tokenizer, "My dream is", n=32, max_new_tokens=10, top_p=1.0, seed=4)
    whole = [t for t in texts if t is not None]
    assert 0 < len(whole) < 32  # some rows ended at the line break, some ran out of budget
    assert all(re.fullmatch(r"My dream is( la){0,9}", t) for t in whole), whole
    # greedy: always " la", never the line break: every row runs out, none is a post
    assert engine.sample(tokenizer, "My dream is", n=3, max_new_tokens=7, top_k=1, seed=0) == [None] * 3


def test_budget_and_min_length_count_as_the_transformers_path(int8_settings, tiny_base):
    from transformers import AutoTokenizer

    path = fixed_model_dir(int8_settings, tiny_base, "ada", {" la": 0.5, "<|endoftext|>": 0.5})
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = ct2.Int8Engine(path)
    prompt_tokens = len(tokenizer.encode("<|endoftext|>My dream is"))
    texts = engine.sample(tokenizer, "My dream is", n=16, seed=2, top_p=1.0)
    assert None not in texts
    # min_length 10 holds back end-of-text only, counting end-of-text and the opener
    assert min(t.count(" la") for t in texts) == 10 - prompt_tokens
    # max_length counts end-of-text and the opener: a post keeps at most max_length - prompt_tokens - 1 words
    # (its end-of-text is the last token of the budget); rows that do not end are refused
    texts = engine.sample(tokenizer, "My dream is", n=32, seed=3, top_p=1.0, min_length=0, max_length=8)
    whole = [t for t in texts if t is not None]
    assert None in texts and whole
    assert max(t.count(" la") for t in whole) <= 8 - prompt_tokens - 1
    # the recipe's budget: a model that never ends runs to it and is refused
    path = fixed_model_dir(int8_settings, tiny_base, "bob", {" la": 1.0})
    assert ct2.Int8Engine(path).sample(tokenizer, "My dream is", n=1, seed=0) == [None]


def test_a_line_break_before_min_length_ends_the_post_as_with_transformers(int8_settings, tiny_base):
    from transformers import AutoTokenizer

    path = fixed_model_dir(int8_settings, tiny_base, "ada", {" la": 0.5, "\n": 0.5})
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = ct2.Int8Engine(path).sample(tokenizer, "My dream is", n=16, seed=3, top_p=1.0)
    assert None not in texts and "My dream is" in texts  # min_length does not hold back a line break


def test_copies_are_refused_and_resampled_through_the_int8_path(bot, int8_settings, tiny_base):
    fixed_model_dir(int8_settings, tiny_base, "ada", {" coffee": 0.8, "\n": 0.2},
                    training_texts=["My dream is coffee", "My dream is coffee coffee coffee"])
    result = bot.generate("ada", n=3, seed=5, top_p=1.0, max_new_tokens=12)
    assert bot.cache.get("ada").engine is not None
    refused = {"My dream is", "My dream is coffee", "My dream is coffee coffee coffee"}
    assert len(result.texts) == 3 and len(set(result.texts)) == 3
    assert all(re.fullmatch(r"My dream is( coffee)+", t) and t not in refused for t in result.texts)
    assert "exact copy of a training post" in result.reasons
    assert bot.generate("ada", n=3, seed=5, top_p=1.0, max_new_tokens=12).texts == result.texts


def test_a_model_trained_before_is_converted_on_first_use(bot, int8_settings, tiny_base):
    path = fixed_model_dir(int8_settings, tiny_base, "ada", {" coffee": 0.8, "\n": 0.2}, convert=False)
    first = bot.generate("ada", n=2, seed=1, top_p=1.0, max_new_tokens=12)
    assert len(first.texts) == 2
    assert bot.cache.get("ada").engine is None  # served by transformers meanwhile
    assert bot.model_store.converter.wait(120)
    assert ct2.ready(path)
    loaded = bot.cache.get("ada")  # the cache sees the new copy and loads the model again, from int8
    assert loaded.engine is not None and bot.cache.stats()["stale"] == 1
    assert len(bot.generate("ada", n=2, seed=1, top_p=1.0, max_new_tokens=12).texts) == 2


def test_a_model_that_cannot_be_converted_stays_on_transformers(bot, int8_settings, tiny_base):
    path = make_model_dir(int8_settings.models_dir, "ada", tiny_base)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "activation_function": "tanh"}))
    bot.cache.get("ada")  # transformers loads it lazily; the conversion refuses the activation
    assert bot.model_store.converter.wait(120)
    assert bot.model_store.converter.failed(path) and not ct2.ready(path)
    assert not (path / INT8_DIR).exists() and [p.name for p in path.iterdir() if p.name.startswith(".")] == []
    assert not bot.model_store.converter.request(path)  # not tried again for the same weights
    import os

    os.utime(path / "model.safetensors", (1, 1))  # new weights (a retrain): tried again
    assert not bot.model_store.converter.failed(path)


def test_without_ctranslate2_transformers_serves_and_trains(monkeypatch, int8_settings, tiny_base):
    path = fixed_model_dir(int8_settings, tiny_base, "ada", {" coffee": 0.8, "\n": 0.2})
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if the `int8` extra were not installed
    assert not ct2.available()
    store = ModelStore(int8_settings.models_dir, int8=True)
    assert store.int8 is False and store.converter is None
    loaded = store.load("ada")  # a converted copy on disk is ignored
    assert loaded.engine is None and loaded.model is not None
    from bot.generation import generate

    assert len(generate(loaded, n=2, seed=0, top_p=1.0, max_new_tokens=12).texts) == 2
    from bot.training.trainer import convert_int8

    assert convert_int8(path) is None


def test_the_trainer_converts_before_it_publishes(int8_settings):
    import asyncio

    from transformers import pipeline

    from tests.kit.posting import SAMPLES

    service = Mimicbot(int8_settings.model_copy(update={"mimicbot_base_model": "tiny"}))
    try:
        request = asyncio.run(service.build_request([str(SAMPLES / "ada_bytes.zip")], max_steps=2, seed=1))
        assert request.int8 is True
        job = service.run_job(service.submit(request)["id"])
        assert job["state"] == "succeeded", job.get("error")
        path = int8_settings.models_dir / request.model_id
        assert ct2.ready(path)
        record = json.loads((path / "training.json").read_text())
        assert record["int8"]["converted"] is True
        loaded = service.cache.get(request.model_id)
        assert loaded.engine is not None
        assert service.model_store.converter.wait(0)  # nothing left to convert
        assert pipeline("text-generation", model=str(path), device="cpu")("Hi", max_new_tokens=2)
    finally:
        service.close()


def test_a_reply_reads_its_context_on_the_int8_path_too(int8_settings, tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_model_dir(int8_settings.models_dir, "ada", tiny_base,
                          model=AutoModelForCausalLM.from_pretrained(tiny_base))
    ct2.convert(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = ct2.Int8Engine(path)
    plain = engine.sample(tokenizer, "", n=8, max_new_tokens=60, seed=1)
    assert engine.sample(tokenizer, "", n=8, max_new_tokens=60, seed=1) == plain
    assert engine.sample(tokenizer, "", n=8, max_new_tokens=60, seed=1, context="Hello world, la la") != plain


def test_enough_stops_the_rows_after_a_run_that_gives_enough_and_keeps_that_run_as_it_was(int8_settings, tiny_base):
    from transformers import AutoTokenizer

    path = fixed_model_dir(int8_settings, tiny_base, "ada", {" la": 0.85, "\n": 0.15})
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = ct2.Int8Engine(path)
    options = dict(n=12, max_new_tokens=40, top_p=1.0, min_length=0)
    stopped_early = 0
    for seed in range(7, 13):
        whole = engine.sample(tokenizer, "My dream is", seed=seed, **options)
        assert len(whole) == 12 and len(set(whole)) > 3  # rows of many lengths
        seen = []

        def three_posts(posts):
            seen.append(list(posts))
            return sum(p is not None for p in posts) >= 3

        cut = engine.sample(tokenizer, "My dream is", seed=seed, enough=three_posts, **options)
        # the rows before the stop are the rows drawn without it; the rows after are left out
        assert cut == whole[:len(cut)]
        # asked each time the finished run grew (not once every row has finished), always with a run of finished
        # rows from the first
        assert all(s == whole[:len(s)] for s in seen) and [len(s) for s in seen] == sorted({len(s) for s in seen})
        if len(cut) < 12:
            stopped_early, early_seed = stopped_early + 1, seed
            # stopped at the first run that gave 3 posts (a run grows by every row finished before its next one)
            assert seen[-1] == cut and sum(p is not None for p in cut) >= 3
            assert all(sum(p is not None for p in s) < 3 for s in seen[:-1])
    assert stopped_early >= 3  # (the run reaches the last row only when a row before it is the batch's longest)
    # never enough: every row runs to its end, as without it
    assert engine.sample(tokenizer, "My dream is", seed=seed, enough=lambda posts: False, **options) == whole

    def broken(posts):
        raise ValueError("checked")

    with pytest.raises(ValueError, match="checked"):
        engine.sample(tokenizer, "My dream is", seed=early_seed, enough=broken, **options)


def test_generate_stops_spare_rows_and_keeps_the_posts_it_kept_before(bot, int8_settings, tiny_base, monkeypatch):
    # each row is read in order and the spares after the tenth post kept are not examined; the engine stops them
    # as soon as that is settled: the same posts as reading every row run to its end
    from bot.generation import refusal

    fixed_model_dir(int8_settings, tiny_base, "ada", {" coffee": 0.5, " tea": 0.45, "\n": 0.05},
                    training_texts=["My dream is coffee", "My dream is tea"])
    loaded = bot.cache.get("ada")
    assert loaded.engine is not None
    settings = dict(top_p=1.0, max_new_tokens=60)
    drawn = []  # (rows asked, rows returned) of each call generate makes
    engine_sample = loaded.engine.sample

    def observed(tokenizer, prompt, n, **options):
        rows = engine_sample(tokenizer, prompt, n, **options)
        if "enough" in options:
            drawn.append((n, len(rows)))
        return rows

    monkeypatch.setattr(loaded.engine, "sample", observed)
    compared, refused = 0, 0
    for seed in range(8):
        result = bot.generate("ada", n=10, seed=seed, **settings)
        rows = loaded.engine.sample(loaded.tokenizer, "My dream is", 13, seed=seed, temperature=1.0, top_k=50,
                                    max_length=160, min_length=10, **settings)
        kept, examined = [], 0
        for post in rows:
            if len(kept) == 10:
                break
            examined += 1
            if post is not None and not refusal(loaded, "My dream is", post, kept):
                kept.append(post)
        if len(kept) < 10:  # a second round: not this test's case
            continue
        assert result.texts == kept and result.attempts == examined and result.rejected == examined - 10
        compared += 1
        refused += result.rejected
    assert compared >= 4 and refused > 0  # some calls needed their spares
    assert any(returned < asked for asked, returned in drawn)  # and the engine stopped rows no longer needed


def test_unseeded_rows_are_split_between_workers_and_come_back_in_order(int8_settings, tiny_base):
    from transformers import AutoTokenizer

    path = fixed_model_dir(int8_settings, tiny_base, "ada", {" la": 0.85, "\n": 0.15})
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = ct2.Int8Engine(path, threads=2)
    assert engine.workers == engine.generator.num_generators == 2
    assert ct2.Int8Engine(path, threads=2, workers=1).generator.num_generators == 1
    assert ct2.Int8Engine(path, threads=1).workers == 1 and ct2.Int8Engine(path, threads=6).workers == ct2.WORKERS
    # what the engine relies on: CTranslate2 splits the rows into one batch per worker and still names each row by
    # its place in the call, in the callback as in the results
    start = tokenizer.convert_ids_to_tokens(tokenizer.encode("<|endoftext|>My dream is"))
    tokens: dict[int, list[int]] = {}

    def record(step):
        tokens.setdefault(step.batch_id, []).append(step.token_id)
        return False

    results = engine.generator.generate_batch([start] * 13, max_batch_size=7, max_length=40, min_length=0,
                                              include_prompt_in_result=False, sampling_topk=50, callback=record)
    assert sorted(tokens) == list(range(13))
    assert all(tokens[i] == r.sequences_ids[0] for i, r in enumerate(results))
    # unseeded calls on two workers: posts by the same stop rule, and `enough` still stops after a run of rows
    texts = engine.sample(tokenizer, "My dream is", n=13, max_new_tokens=40, top_p=1.0, min_length=0)
    assert len(texts) == 13 and all(t is None or re.fullmatch(r"My dream is( la)*", t) for t in texts)
    shorter = 0
    for _ in range(10):
        seen = []
        cut = engine.sample(tokenizer, "My dream is", n=13, max_new_tokens=40, top_p=1.0, min_length=0,
                            enough=lambda posts: seen.append(list(posts)) or sum(p is not None for p in posts) >= 2)
        assert all(t is None or re.fullmatch(r"My dream is( la)*", t) for t in cut)
        if len(cut) < 13:
            shorter += 1
            assert seen[-1] == cut and sum(p is not None for p in cut) >= 2
    assert shorter >= 2
