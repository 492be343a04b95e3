"""The model folder, `<models_dir>/<id>/`: its file names, and the only code that installs, removes or stamps one.

A model folder is a Hugging Face model directory (config.json, weights, tokenizer, generation_config.json) plus
mimicbot's own files: the run's record (training.json), the anti-copy index (anticopy.json), the card
(README.md), its pictures (loss.png, predictions.png) and, with the `int8` extra, the int8 copy of its weights
(ct2-int8/, bot/generation/ct2.py). A LoRA persona's folder holds an adapter instead of config.json and weights:
adapter_config.json (which names the base: a hub id or a local folder's path) and adapter_model.safetensors;
`transformers` and `peft` load it over its base (it has no int8 copy). Names starting with a dot (`.work`, `.trash-…`,
`.replaced-…`) are scratch space beside the models, never models.

- A trained model is written whole in a work folder, then **installed**: on Linux the new folder and the old
  one trade places in one atomic `renameat2(RENAME_EXCHANGE)`, so a reader always finds a complete model;
  elsewhere the old one is renamed away first (and put back if the second rename fails).
- A model is **removed** by renaming it out of sight first, so it is never seen half-deleted.
- Its **stamp** (inode and mtime of config.json, or of adapter_config.json, which every install replaces) tells a
  cache that the model on disk changed.
Single files inside a folder are written with bot/atomic.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from .atomic import fsync_dir

CONFIG_FILE = "config.json"  # a folder without it (or ADAPTER_FILE) is not a model
ADAPTER_FILE = "adapter_config.json"  # a LoRA adapter (peft), over the base it names
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
GENERATION_FILE = "generation_config.json"
TRAINING_FILE = "training.json"
ANTICOPY_FILE = "anticopy.json"
CARD_FILE = "README.md"
LOSS_FILE = "loss.png"
PREDICTIONS_FILE = "predictions.png"
INT8_DIR = "ct2-int8"  # the CTranslate2 int8 copy of the weights (bot/generation/ct2.py); transformers ignores it


def is_model(folder: Path) -> bool:
    return not folder.name.startswith(".") and ((folder / CONFIG_FILE).is_file() or (folder / ADAPTER_FILE).is_file())


def is_adapter(folder: Path) -> bool:
    """A LoRA persona: an adapter over a base, not a whole model."""
    return (folder / ADAPTER_FILE).is_file() and not (folder / CONFIG_FILE).is_file()


def adapter_base(folder: Path) -> str | None:
    """The base an adapter folder names (a hub id or a local path); None for a whole model or an unreadable one."""
    if not is_adapter(folder):
        return None
    try:
        config = json.loads((folder / ADAPTER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return base if isinstance(base, str) and base else None


def stamp(folder: Path) -> tuple[int, int] | None:
    """Which version of the model is in `folder` (None: none is)."""
    for name in (CONFIG_FILE, ADAPTER_FILE):
        try:
            st = (folder / name).stat()
        except (OSError, ValueError):
            continue
        return st.st_ino, st.st_mtime_ns
    return None


def install(work_dir: Path, final_dir: Path) -> Path:
    """Move a finished model folder into place, replacing the model of that id only once the new one is there."""
    work_dir, final_dir = Path(work_dir), Path(final_dir)
    if final_dir.exists() and _exchange(work_dir, final_dir):
        shutil.rmtree(work_dir, ignore_errors=True)  # now the old model
    else:
        old = None
        if final_dir.exists():
            old = final_dir.with_name(f".replaced-{final_dir.name}-{uuid.uuid4().hex[:8]}")
            os.rename(final_dir, old)
        try:
            os.rename(work_dir, final_dir)
        except OSError:
            if old is not None:
                os.rename(old, final_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    fsync_dir(final_dir.parent)
    return final_dir


def remove(folder: Path) -> None:
    """Delete a model folder: renamed out of sight first (FileNotFoundError if it is already gone)."""
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False where the system or file system cannot."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        except OSError:
            _LIBC = False
    return _LIBC or None


_DISK_FULL = re.compile(r"No space left on device|Read-only file system|Disk quota exceeded")


def is_disk_error(e: BaseException) -> bool:
    """An OSError, or a library's own error wrapping one (safetensors says "I/O error: No space left …")."""
    return isinstance(e, OSError) or bool(_DISK_FULL.search(str(e)))


def disk_error(e: BaseException, model_id: str) -> str:
    """A disk failure in one line: what failed, where, and that the published model was not touched."""
    found = _DISK_FULL.search(str(e))
    reason = getattr(e, "strerror", None) or (found.group(0) if found else str(e))
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    return (f"could not write the model: {reason}{where}; the model {model_id} that was there, "
            "if any, is unchanged")


__all__ = ["ADAPTER_FILE", "ADAPTER_WEIGHTS_FILE", "ANTICOPY_FILE", "CARD_FILE", "CONFIG_FILE", "GENERATION_FILE",
           "INT8_DIR", "LOSS_FILE", "PREDICTIONS_FILE", "TRAINING_FILE", "adapter_base", "disk_error", "install",
           "is_adapter", "is_disk_error", "is_model", "remove", "stamp"]

