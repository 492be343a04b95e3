"""The model cache: trained models loaded on demand and kept in memory, least recently used first out.

Bounded by the number of models (MIMICBOT_CACHE_MODELS) and by their memory, the bytes of their parameters
and buffers (MIMICBOT_CACHE_MB). LoRA personas (bot/generation/bases.py) are counted apart: their number is
bounded by MIMICBOT_CACHE_ADAPTERS, each base they share counts once as a model and once in memory, and each
persona adds its adapter's bytes. Evicting a persona releases its adapter, and the base with its last persona. A model larger than the memory bound on its own is still
served (it is the only one kept) so that it can be used at all; a warning says so.

A model retrained meanwhile (by this process's pool or by `mimicbot train` in another process) is
noticed: `stamp(model_id)` identifies the version on disk (ModelStore.stamp: the inode and mtime of its
config.json, which every publish replaces), and a cached copy with another stamp is loaded again.

Safe under concurrent requests: a request for a cached model takes one short lock; a request for a model
being loaded waits on that model's own lock, so five requests at once load it once, and requests for
cached models are not held up by a load. (Loads of different models run one after the other: see
ModelStore.load.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from .anticopy import AntiCopyIndex

log = logging.getLogger(__name__)

MB = 1024 * 1024


@dataclass
class LoadedModel:
    """A model ready to generate: weights, tokenizer, generation defaults and the anti-copy index."""

    model_id: str
    model: Any  # a transformers causal LM, in eval mode (None when `engine` serves the model)
    tokenizer: Any
    defaults: dict = field(default_factory=dict)  # sampling settings from generation_config.json
    anticopy: AntiCopyIndex | None = None
    load_seconds: float = 0.0
    engine: Any = None  # the int8 engine (ct2.Int8Engine) when the model has an int8 copy; else transformers samples
    # a LoRA persona over a shared base (bot/generation/bases.py): the base, the adapter's name in it, and the
    # calls that select the adapter before sampling and remove it when the cache lets the persona go
    shared: Any = None
    adapter: str | None = None
    activate: Callable[[], None] | None = None
    release: Callable[[], None] | None = None

    @property
    def nbytes(self) -> int:
        """The model's own memory: the int8 copy's, the whole model's, or a LoRA persona's adapter (its base is
        shared and counted once by the cache)."""
        if self.engine is not None:
            return self.engine.nbytes
        return self.shared.adapter_bytes(self.adapter) if self.shared is not None else model_bytes(self.model)


def model_bytes(model) -> int:
    """Memory held by a torch module: its parameters and buffers (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


@dataclass
class _Entry:
    loaded: LoadedModel
    nbytes: int
    stamp: Hashable = None
    hits: int = 0
    last_used: float = field(default_factory=time.time)


class ModelCache:
    """LRU of LoadedModel, bounded by count and by memory. `loader(model_id)` loads one (or raises);
    `stamp(model_id)`, if given, names the version on disk (see the module docstring)."""

    def __init__(self, max_models: int, max_mb: float, loader: Callable[[str], LoadedModel],
                 stamp: Callable[[str], Hashable] | None = None, max_adapters: int = 64):
        if max_models < 1 or max_mb <= 0:
            raise ValueError("a model cache holds at least one model and some memory")
        self.max_models = max_models  # whole models and shared bases
        self.max_adapters = max_adapters  # LoRA personas
        self.max_bytes = int(max_mb * MB)
        self.loader = loader
        self.stamp = stamp or (lambda model_id: None)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest use first
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._counts = {"hits": 0, "misses": 0, "loads": 0, "evictions": 0, "stale": 0, "load_seconds": 0.0}

    def get(self, model_id: str) -> LoadedModel:
        """The model, from memory or loaded now. Errors from the loader (UnknownModel, ...) pass through."""
        stamp = self.stamp(model_id)
        hit = self._lookup(model_id, stamp)
        if hit is not None:
            return hit
        with self._lock:
            key_lock = self._loading.setdefault(model_id, threading.Lock())
        with key_lock:
            hit = self._lookup(model_id, stamp, count_miss=False)  # loaded by another request while we waited
            if hit is not None:
                return hit
            try:
                return self._load(model_id, stamp)
            finally:
                with self._lock:
                    self._loading.pop(model_id, None)

    def _lookup(self, model_id: str, stamp: Hashable, count_miss: bool = True) -> LoadedModel | None:
        stale = None
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is not None and entry.stamp != stamp:  # replaced or removed on disk
                stale = self._entries.pop(model_id)
                self._counts["stale"] += 1
                entry = None
            if entry is None:
                if count_miss:
                    self._counts["misses"] += 1
            else:
                self._entries.move_to_end(model_id)
                entry.hits += 1
                entry.last_used = time.time()
                self._counts["hits"] += 1
        _release([stale])  # outside the lock: releasing an adapter waits for a generation in progress
        return entry.loaded if entry is not None else None

    def _load(self, model_id: str, stamp: Hashable) -> LoadedModel:
        started = time.perf_counter()
        loaded = self.loader(model_id)
        seconds = time.perf_counter() - started
        loaded.load_seconds = seconds
        entry = _Entry(loaded, loaded.nbytes, stamp)
        with self._lock:
            self._counts["loads"] += 1
            self._counts["load_seconds"] += seconds
            replaced = self._entries.pop(model_id, None)
            self._entries[model_id] = entry
            evicted = self._evict_over_bounds(keep=model_id)
        _release([replaced, *evicted])
        if entry.nbytes > self.max_bytes:
            log.warning("model %s needs %.0f MB, more than the cache's %.0f MB: kept alone",
                        model_id, entry.nbytes / MB, self.max_bytes / MB)
        log.info("loaded model %s (%.1f MB) in %.2fs", model_id, entry.nbytes / MB, seconds)
        return loaded

    def _evict_over_bounds(self, keep: str) -> list[_Entry]:
        """Drop least recently used models until both bounds hold (never `keep`). Caller holds the lock, and
        releases the returned entries once it has let go of it."""
        evicted = []
        while len(self._entries) > 1 and (self._models() > self.max_models or self._adapters() > self.max_adapters
                                          or self._bytes() > self.max_bytes):
            oldest = next(k for k in self._entries if k != keep)
            evicted.append(self._entries.pop(oldest))
            self._counts["evictions"] += 1
            log.info("evicted model %s from the cache", oldest)
        return evicted

    def _models(self) -> int:
        """Whole models, and each base shared by LoRA personas once."""
        return (sum(1 for e in self._entries.values() if e.loaded.shared is None)
                + len({id(e.loaded.shared) for e in self._entries.values() if e.loaded.shared is not None}))

    def _adapters(self) -> int:
        return sum(1 for e in self._entries.values() if e.loaded.shared is not None)

    def _bytes(self) -> int:
        """Personas' own bytes plus each shared base once."""
        return sum(e.nbytes for e in self._entries.values()) + self._base_bytes()

    def _base_bytes(self) -> int:
        bases = {id(e.loaded.shared): e.loaded.shared.nbytes for e in self._entries.values()
                 if e.loaded.shared is not None}
        return sum(bases.values())

    def evict(self, model_id: str) -> bool:
        """Forget a model (after it was removed or retrained). True if it was cached."""
        with self._lock:
            entry = self._entries.pop(model_id, None)
        _release([entry])
        return entry is not None

    def clear(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        _release(entries)

    def __contains__(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._entries

    def ids(self) -> list[str]:
        """Cached model ids, least recently used first."""
        with self._lock:
            return list(self._entries)

    def stats(self) -> dict:
        """Figures for health checks and benchmarks."""
        with self._lock:
            return {
                "models": [{"id": k, "mb": round(e.nbytes / MB, 2), "hits": e.hits, "last_used": e.last_used,
                            "load_seconds": round(e.loaded.load_seconds, 3)} for k, e in self._entries.items()],
                "count": len(self._entries), "max_models": self.max_models,
                "adapters": self._adapters(), "max_adapters": self.max_adapters,
                "mb": round(self._bytes() / MB, 2), "max_mb": round(self.max_bytes / MB, 2),
                "base_mb": round(self._base_bytes() / MB, 2),
                "bases": len({id(e.loaded.shared) for e in self._entries.values() if e.loaded.shared is not None}),
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in self._counts.items()},
            }


def _release(entries) -> None:
    """Let go of evicted LoRA personas' adapters (and of a base with its last persona)."""
    for entry in entries:
        if entry is not None and entry.loaded.release is not None:
            entry.loaded.release()
