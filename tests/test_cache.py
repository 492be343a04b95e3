"""The model cache over real model directories: LRU by count and by memory, one load under concurrency."""

from __future__ import annotations

import logging
import threading

import pytest
from transformers import AutoTokenizer

from bot.errors import UnknownModel
from bot.generation.cache import MB, ModelCache
from bot.generation.models import ModelStore
from bot.modelfolder import install
from tests.kit.models import make_model_dir, random_gpt2


@pytest.fixture
def store(settings, tiny_base) -> ModelStore:
    for model_id in ("ada", "bob", "cy"):
        make_model_dir(settings.models_dir, model_id, tiny_base)
    big = random_gpt2(AutoTokenizer.from_pretrained(tiny_base), n_embd=256, n_layer=4)
    make_model_dir(settings.models_dir, "big", tiny_base, model=big)
    return ModelStore(settings.models_dir)


def size_mb(store: ModelStore, model_id: str) -> float:
    return store.load(model_id).nbytes / MB


def test_evicts_least_recently_used_by_count(store):
    cache = ModelCache(max_models=2, max_mb=10_000, loader=store.load)
    ada = cache.get("ada")
    cache.get("bob")
    assert cache.get("ada") is ada  # a hit, and now the most recently used
    cache.get("cy")
    assert cache.ids() == ["ada", "cy"]  # bob was the least recently used
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["loads"], stats["evictions"]) == (1, 3, 3, 1)
    assert stats["count"] == 2 and [m["id"] for m in stats["models"]] == ["ada", "cy"]


def test_evicts_by_memory(store):
    small, big = size_mb(store, "ada"), size_mb(store, "big")
    assert big > 2 * small
    cache = ModelCache(max_models=10, max_mb=small + big + 0.01, loader=store.load)
    cache.get("ada")
    cache.get("bob")
    assert cache.ids() == ["ada", "bob"]
    cache.get("big")  # three models would exceed the memory bound: the oldest goes
    assert cache.ids() == ["bob", "big"]
    assert cache.stats()["mb"] == pytest.approx(small + big, abs=0.02)
    cache.get("cy")  # bob + big + cy is too much again
    assert cache.ids() == ["big", "cy"]


def test_a_model_above_the_memory_bound_is_served_alone(store, caplog):
    small = size_mb(store, "ada")
    cache = ModelCache(max_models=10, max_mb=small * 1.5, loader=store.load)
    cache.get("ada")
    with caplog.at_level(logging.WARNING, logger="bot.generation.cache"):
        loaded = cache.get("big")
    assert loaded.model_id == "big" and cache.ids() == ["big"]
    assert "more than the cache's" in caplog.text


def test_concurrent_requests_load_a_model_once(store):
    loads: list[str] = []

    def counting_loader(model_id):
        loads.append(model_id)
        return store.load(model_id)

    cache = ModelCache(max_models=2, max_mb=10_000, loader=counting_loader)
    start = threading.Barrier(6)
    got: list = []

    def request(model_id):
        start.wait()
        got.append(cache.get(model_id))

    threads = [threading.Thread(target=request, args=("ada",)) for _ in range(5)]
    threads.append(threading.Thread(target=request, args=("bob",)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(loads) == ["ada", "bob"]  # five requests for ada, one load
    ada = [g for g in got if g.model_id == "ada"]
    assert len(ada) == 5 and all(g is ada[0] for g in ada)
    assert cache.stats()["loads"] == 2


def test_unknown_model_names_close_ids(store):
    cache = ModelCache(max_models=2, max_mb=100, loader=store.load)
    with pytest.raises(UnknownModel, match=r"no model 'bigg'; did you mean big\?"):
        cache.get("bigg")
    assert cache.ids() == [] and cache.stats()["loads"] == 0


def test_loaded_model_carries_index_and_defaults(settings, tiny_base):  # noqa: F811
    make_model_dir(settings.models_dir, "ada", tiny_base, training_texts=["Hot take: coffee is a vegetable ok"],
                   generation={"top_p": 0.9, "max_length": 160})
    loaded = ModelStore(settings.models_dir).load("ada")
    assert loaded.defaults == {"top_p": 0.9, "max_length": 160}
    assert loaded.anticopy.check("hot take coffee is a vegetable ok") == "exact copy of a training post"
    assert not loaded.model.training


def test_evict_forgets_a_model(store):
    cache = ModelCache(max_models=2, max_mb=100, loader=store.load)
    first = cache.get("ada")
    assert cache.evict("ada") and not cache.evict("ada")
    assert cache.get("ada") is not first


def test_a_model_replaced_on_disk_is_loaded_again(settings, tiny_base):  # noqa: F811
    store = ModelStore(settings.models_dir)
    make_model_dir(settings.models_dir, "ada", tiny_base)
    cache = ModelCache(max_models=2, max_mb=100, loader=store.load, stamp=store.stamp)
    first = cache.get("ada")
    assert cache.get("ada") is first
    (settings.models_dir / "ada" / "README.md").write_text("a rewritten card does not change the model")
    assert cache.get("ada") is first

    # retrained: the trainer installs a new folder in place of the old one
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    make_model_dir(settings.models_dir / ".work", "ada", tiny_base, model=random_gpt2(tokenizer, seed=1))
    install(settings.models_dir / ".work" / "ada", settings.models_dir / "ada")
    second = cache.get("ada")
    assert second is not first
    assert not second.model.transformer.wte.weight.equal(first.model.transformer.wte.weight)
    assert cache.stats()["stale"] == 1 and cache.stats()["loads"] == 2

    store.remove("ada")  # by another process, say
    with pytest.raises(UnknownModel):
        cache.get("ada")
    assert cache.ids() == []
