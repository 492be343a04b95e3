"""Many LoRA personas over one base in memory: each base loaded once, adapters attached and swapped per request.

A LoRA persona's folder holds an adapter that names its base (bot/modelfolder.py). The first persona of a base
loads the base and wraps it in a peft model with the persona's adapter; the next ones load only their adapter
into that same model (`load_adapter`, a few MB each). Before generating, a persona selects its adapter
(`activate`, called by the sampler under its lock, so that two requests never switch the shared model under
each other). A switch names the adapter in each LoRA layer of the model (a list kept per base): well under a
millisecond, where peft's own `set_adapter` also re-freezes every adapter of every layer, which grows with the
number of personas (92 ms at 50 personas over a 124M base; bench/README.md, "LoRA").

When the cache lets a persona go, its adapter is deleted from the model (`release`); when a base has no persona
left, it is forgotten, and its memory is freed once no request still holds it. A request that still holds an
evicted persona finds its adapter gone and loads it again into the model it holds: it is answered, correctly,
and the memory goes with it.

Adapter names inside the shared model are unique per load ("p1", "p2", ...), so a persona retrained while an
older copy is cached never collides with it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class SharedBase:
    """One base model in memory, wrapped by peft, and the adapters of the personas attached to it."""

    key: str  # the base as the adapters name it, and the dtype
    model: Any  # a peft PeftModel
    nbytes: int  # the base's own weights (adapters not counted)
    adapters: set[str] = field(default_factory=set)  # the adapters of the cached personas
    paths: dict[str, Path] = field(default_factory=dict)  # adapter name -> its folder
    layers: list | None = None  # the model's LoRA layers, found again after an adapter is added

    def adapter_bytes(self, name: str) -> int:
        """Memory of one adapter's weights in the model."""
        marks = (f".lora_A.{name}.", f".lora_B.{name}.", f".lora_embedding_A.{name}", f".lora_embedding_B.{name}")
        return sum(p.numel() * p.element_size() for n, p in self.model.named_parameters()
                   if any(m in n for m in marks))


class SharedBases:
    """The bases in memory, by key. `load_base(name)` loads a base model (eval mode, the store's dtype)."""

    def __init__(self, load_base: Callable[[str], Any], lock: threading.Lock, load_lock: threading.Lock):
        self.load_base = load_base
        self.lock = lock  # the sampling lock: no adapter is added, switched or removed while a model generates
        # the store's loading lock: transformers' loading patches torch globally (meta device), so new adapter
        # layers are never made while a model loads in another thread. Always taken after `lock`, never before.
        self.load_lock = load_lock
        self._bases: dict[str, SharedBase] = {}
        self._guard = threading.Lock()  # this object's own dict
        self._names = itertools.count(1)

    def attach(self, base: str, adapter_dir: Path) -> tuple[SharedBase, str]:
        """The shared base with the adapter in `adapter_dir` loaded into it, and the adapter's name there."""
        from peft import PeftModel

        name = f"p{next(self._names)}"
        with self._guard:
            shared = self._bases.get(base)
        if shared is None:
            model = self.load_base(base)  # outside the sampling lock: nobody uses it yet
            nbytes = _module_bytes(model)
            with self.load_lock:
                peft_model = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name).eval()
            shared = SharedBase(base, peft_model, nbytes, {name}, {name: Path(adapter_dir)})
            with self._guard:
                if base in self._bases:  # another persona of this base loaded it meanwhile: use that copy
                    shared = self._bases[base]
                else:
                    self._bases[base] = shared
                    log.info("loaded base %s (%.1f MB) for LoRA personas", base, nbytes / 2**20)
                    return shared, name
        with self.lock, self.load_lock:
            shared.model.load_adapter(str(adapter_dir), adapter_name=name)
            shared.model.eval()
            shared.layers = None  # an adapter may wrap layers the others did not
        with self._guard:
            shared.adapters.add(name)
            shared.paths[name] = Path(adapter_dir)
        return shared, name

    def activate(self, shared: SharedBase, name: str) -> None:
        """Select the persona's adapter (the caller holds the sampling lock). An adapter released meanwhile (its
        persona evicted while this request held it) is loaded again."""
        if name not in shared.model.peft_config:
            with self.load_lock:
                shared.model.load_adapter(str(shared.paths[name]), adapter_name=name)
            shared.model.eval()
            shared.layers = None
        if shared.model.active_adapter == name:
            return
        if shared.model.peft_config[name].modules_to_save:  # extra trained modules: peft's own switch
            shared.model.set_adapter(name, inference_mode=True)
            return
        # Every adapter here was loaded frozen (is_trainable=False), so a switch only has to name the active one:
        # in each LoRA layer (what its forward reads), in the tuner and in the peft model (what active_adapter reports).
        if shared.layers is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            shared.layers = [m for m in shared.model.modules() if isinstance(m, BaseTunerLayer)]
        for layer in shared.layers:
            layer._active_adapter = [name]
        shared.model.base_model.active_adapter = name
        shared.model.active_adapter = name

    def release(self, shared: SharedBase, name: str) -> None:
        """Remove the persona's adapter; forget the base when no persona uses it any more."""
        with self._guard:
            shared.adapters.discard(name)
            last = not shared.adapters
            if last and self._bases.get(shared.key) is shared:
                del self._bases[shared.key]
                log.info("released base %s: no cached persona uses it", shared.key)
        if last:
            return  # the whole model goes when the last request holding it is done
        with self.lock:
            if name in shared.model.peft_config:
                with warnings.catch_warnings():  # "Adapter pN was active which is now deleted": expected here
                    warnings.simplefilter("ignore")
                    shared.model.delete_adapter(name)
                shared.layers = None

    def stats(self) -> list[dict]:
        with self._guard:
            return [{"base": s.key, "mb": round(s.nbytes / 2**20, 2), "adapters": len(s.adapters)}
                    for s in self._bases.values()]

    def __len__(self) -> int:
        with self._guard:
            return len(self._bases)


def _module_bytes(model) -> int:
    from .cache import model_bytes

    return model_bytes(model)


__all__ = ["SharedBase", "SharedBases"]
