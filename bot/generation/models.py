"""The model store: the models on disk (one folder each, bot/modelfolder.py), listed, described and loaded.

A LoRA persona (an adapter folder) loads over its base, which all the personas of that base share in memory
(bot/generation/bases.py)."""

from __future__ import annotations

import difflib
import json
import logging
import re
import threading
from pathlib import Path

from .. import modelfolder
from ..errors import MimicbotError, UnknownModel
from ..modelfolder import (ANTICOPY_FILE, CARD_FILE, GENERATION_FILE, LOSS_FILE, PREDICTIONS_FILE,
                           TRAINING_FILE)
from .anticopy import VERSION as ANTICOPY_VERSION
from .anticopy import AntiCopyIndex, build_index
from .cache import LoadedModel
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "max_new_tokens", "max_length", "min_length")

MAX_SHOWN = 60  # characters of an unknown model's name quoted back
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
MAX_ID = 255  # a model id is a folder's name: at most 255 bytes on every file system we run on
log = logging.getLogger(__name__)
_LOAD_LOCK = threading.Lock()  # transformers' from_pretrained is not thread-safe (its meta-device set-up)


class ModelStore:
    """The models on disk: list, describe, load and remove them."""

    def __init__(self, models_dir: str | Path, dtype: str = "auto", posts_for=None, int8: bool = False):
        self.root = Path(models_dir)
        # int8: serve a model from its int8 copy when there is one and CTranslate2 is installed, and convert a model
        # that has none in the background (bot/generation/ct2.py); transformers serves it meanwhile
        self.int8 = int8 and _int8_available()
        self.converter = None
        if self.int8:
            from .ct2 import Converter

            self.converter = Converter()
        self.dtype = dtype  # the weights' dtype in memory: auto (bot.devices.inference_dtype), fp32, bf16, fp16
        # training.json -> the model's training posts (cleaned texts), or None when they are not all stored:
        # used to rebuild an anti-copy index of an older format
        self.posts_for = posts_for
        self._bases = None  # SharedBases, made with the first LoRA persona loaded

    # -- finding ----------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """The ids of the models on disk: folders holding a model whose name is a valid model id."""
        return [p.name for p in self._model_folders() if valid_id(p.name)]

    def strays(self) -> list[str]:
        """Folders in the models directory that hold a model but whose name is not a valid model id (a copy
        named `ada_bytes copy`, say): never listed or loaded, so that one odd folder cannot break the rest."""
        return [p.name for p in self._model_folders() if not valid_id(p.name)]

    def _model_folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if modelfolder.is_model(p)), key=lambda p: p.name)

    def path(self, model_id: str) -> Path:
        """The model's directory; UnknownModel (with the closest ids) when there is none."""
        if valid_id(model_id):
            path = self.root / model_id
            if modelfolder.is_model(path):
                return path
        raise UnknownModel(self._unknown_message(model_id))

    def _unknown_message(self, model_id: str) -> str:
        ids = self.ids()
        name = str(model_id)
        shown = repr(name if len(name) <= MAX_SHOWN else name[:MAX_SHOWN - 1] + "…")  # a typed name: escaped, short
        close = difflib.get_close_matches(name[:100], ids, n=3, cutoff=0.5)
        if close:
            return f"no model {shown}; did you mean {', '.join(close)}?"
        if ids:
            return f"no model {shown}; models: {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}"
        return f"no model {shown}; no model is trained yet (mimicbot train HANDLE)"

    def stamp(self, model_id: str) -> tuple | None:
        """Which version of the model is on disk (None: none is), and whether its int8 copy is ready: a model
        converted in the background is loaded again, from its int8 copy."""
        if not valid_id(model_id):
            return None
        folder = self.root / model_id
        version = modelfolder.stamp(folder)
        if not self.int8 or version is None:
            return version
        from .ct2 import ready

        return version, ready(folder)

    # -- describing -------------------------------------------------------------------------------

    def training(self, model_id: str) -> dict:
        """The run's record, training.json ({} for a model trained elsewhere)."""
        return _read_json(self.path(model_id) / TRAINING_FILE)

    def summary(self, model_id: str) -> dict:
        """One line of `models list`."""
        path = self.path(model_id)
        record = _read_json(path / TRAINING_FILE)
        accounts = record.get("accounts") or []
        return {
            "id": model_id,
            "display_name": record.get("display_name") or model_id,
            "accounts": [a.get("handle") for a in accounts if isinstance(a, dict)],
            "created_at": record.get("finished_at") or record.get("created_at"),
            "size_mb": round(_dir_bytes(path) / 1024 / 1024, 2),
            "perplexity_after": _perplexity_after(record),
            "adapter": "lora" if modelfolder.is_adapter(path) else None,
            "base_model": modelfolder.adapter_base(path) or record.get("base_model"),
        }

    def list(self) -> list[dict]:
        return [self.summary(i) for i in self.ids()]

    def show(self, model_id: str) -> dict:
        """training.json, the summary and the paths of the files a person may want."""
        path = self.path(model_id)
        files = {"card": CARD_FILE, "predictions": PREDICTIONS_FILE, "loss": LOSS_FILE, "anticopy": ANTICOPY_FILE,
                 "training": TRAINING_FILE, "generation_config": GENERATION_FILE,
                 "adapter": modelfolder.ADAPTER_WEIGHTS_FILE}
        return {**self.summary(model_id), "path": str(path),
                "files": {k: str(path / name) for k, name in files.items() if (path / name).exists()},
                "training": self.training(model_id)}

    def sampling_defaults(self, model_id: str) -> dict:
        """Sampling settings the model's generation_config.json sets (only those it sets)."""
        config = _read_json(self.path(model_id) / GENERATION_FILE)
        return {k: config[k] for k in SAMPLING_KEYS if config.get(k) is not None}

    # -- loading and removing ---------------------------------------------------------------------

    def load(self, model_id: str) -> LoadedModel:
        """Weights, tokenizer, generation defaults and anti-copy index, ready to sample (eval mode).

        One load at a time in a process: two concurrent `from_pretrained` calls break each other
        ("Cannot copy out of meta tensor")."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..devices import inference_dtype

        path = self.path(model_id)
        if modelfolder.is_adapter(path):
            return self._load_persona(model_id, path)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.int8 and device.type == "cpu":
            loaded = self._load_int8(model_id, path)
            if loaded is not None:
                return loaded
        dtype = inference_dtype(device, self.dtype)
        try:
            with _LOAD_LOCK:
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
                tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise MimicbotError(f"model {model_id!r} cannot be loaded from {path}: {e}") from None
        anticopy = self.anticopy(model_id)
        return LoadedModel(model_id, model, tokenizer, self.sampling_defaults(model_id), anticopy)

    def _load_int8(self, model_id: str, path: Path) -> LoadedModel | None:
        """The model served from its int8 copy; None (transformers serves it) when it has none yet, in which
        case its conversion is queued, or when the copy cannot be loaded."""
        from transformers import AutoTokenizer

        from .ct2 import Int8Engine, ready

        if not ready(path):
            self.converter.request(path)
            return None
        try:
            engine = Int8Engine(path)
            with _LOAD_LOCK:
                tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("model %s: its int8 copy cannot be loaded (%s); generating with transformers", model_id, e)
            return None
        return LoadedModel(model_id, None, tokenizer, self.sampling_defaults(model_id), self.anticopy(model_id),
                           engine=engine)

    def _load_persona(self, model_id: str, path: Path) -> LoadedModel:
        """A LoRA persona: its adapter attached to its base, which is loaded once for all its personas."""
        from transformers import AutoTokenizer

        base = modelfolder.adapter_base(path)
        if base is None:
            raise MimicbotError(f"model {model_id!r}: its {modelfolder.ADAPTER_FILE} names no base model")
        bases = self.shared_bases()
        try:
            shared, name = bases.attach(base, path)
            with _LOAD_LOCK:
                tokenizer = AutoTokenizer.from_pretrained(path)
        except ImportError:
            raise MimicbotError(f"model {model_id!r} is a LoRA adapter: loading it needs peft "
                                "(pip install 'mimicbot[lora]')") from None
        except (OSError, ValueError) as e:
            raise MimicbotError(f"model {model_id!r} cannot be loaded from {path} over {base}: {e}") from None
        return LoadedModel(model_id, shared.model, tokenizer, self.sampling_defaults(model_id),
                           self.anticopy(model_id), shared=shared, adapter=name,
                           activate=lambda: bases.activate(shared, name), release=lambda: bases.release(shared, name))

    def shared_bases(self):
        """The bases in memory under LoRA personas (bot/generation/bases.py)."""
        if self._bases is None:
            from .bases import SharedBases
            from .sampling import LOCK

            self._bases = SharedBases(self._load_base, LOCK, _LOAD_LOCK)
        return self._bases

    def _load_base(self, base: str):
        """A base model for LoRA personas: a hub id or a local folder, in the store's dtype, eval mode."""
        import torch
        from transformers import AutoModelForCausalLM

        from ..devices import inference_dtype

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        with _LOAD_LOCK:
            return AutoModelForCausalLM.from_pretrained(base, dtype=inference_dtype(device, self.dtype)).to(device).eval()

    def anticopy(self, model_id: str) -> AntiCopyIndex | None:
        """The model's anti-copy index (None if it has none). An index of an older format is rebuilt from the
        model's posts in the store and saved (atomically) when they are all there; otherwise it is used as it
        is, with its own run length."""
        path = self.path(model_id) / ANTICOPY_FILE
        if not path.exists():
            return None
        index = AntiCopyIndex.load(path)
        if index.version == ANTICOPY_VERSION:
            return index
        texts = self.posts_for(self.training(model_id)) if self.posts_for else None
        if not texts:
            log.warning("model %s: its anti-copy index is of version %s and its posts are not in the store; "
                        "it is used as it is (retrain the model to renew it)", model_id, index.version)
            return index
        index = build_index(texts)
        index.save(path)
        log.info("model %s: anti-copy index rebuilt from %d stored posts (version %s)", model_id, index.posts,
                 ANTICOPY_VERSION)
        return index

    def remove(self, model_id: str) -> Path:
        """Delete a model atomically: renamed out of sight first, so it is never seen half-deleted."""
        path = self.path(model_id)
        try:
            modelfolder.remove(path)
        except FileNotFoundError:  # removed by another process meanwhile
            raise UnknownModel(self._unknown_message(model_id)) from None
        return path


def _int8_available() -> bool:
    from .ct2 import available

    if not available():
        log.info("CTranslate2 is not installed (the `int8` extra): models generate with transformers")
        return False
    return True


def valid_id(model_id) -> bool:
    """A name that can only be a folder right under the models folder: no path, no `..`, not too long."""
    return (isinstance(model_id, str) and len(model_id) <= MAX_ID and _ID.fullmatch(model_id) is not None
            and ".." not in model_id)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise MimicbotError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else {}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _perplexity_after(record: dict) -> float | None:
    metrics = record.get("eval") or record.get("metrics") or {}
    value = metrics.get("perplexity_after") if isinstance(metrics, dict) else None
    return value if value is not None else record.get("perplexity_after")


__all__ = ["ModelStore"]
