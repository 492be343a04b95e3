"""The int8 generation path: a model's weights converted to CTranslate2 int8, sampled with the same settings,
stop rule and seed contract as the transformers path (sampling.py). Optional: the `int8` extra.

Why CTranslate2: on this project's CPU without bf16 (AVX2) it sampled 10 posts several times faster than
transformers in fp32 and than torch's dynamic int8 quantization, and holds a quarter of the memory
(bench/README.md, "int8 generation").

- **Where**: the converted model is `<model>/ct2-int8/` (modelfolder.INT8_DIR), beside the transformers files,
  so the folder still loads in `pipeline()`. It is written in a scratch folder inside the model folder and
  moved into place whole (modelfolder.install), with a fingerprint of the weights it came from (size and
  mtime of each weights file): a converted copy that does not match the weights beside it is not used.
- **When**: the trainer converts before it publishes (`convert`); a model trained before (or elsewhere) is
  converted on first use, in the background, by a child process at low priority (`Converter`), while the
  transformers path serves it; the cache notices the new copy (ModelStore.stamp) and loads it.
- **Sampling**: `top_k`, `top_p`, `temperature` map one to one. The stop rule and `min_length` follow the
  transformers path exactly: `min_length` holds back only end-of-text (CTranslate2's own min_length would hold
  back every stop token), and a row stops after its first token that holds a line break (a per-token callback;
  it costs nothing measurable: bench/README.md, "10 samples on the int8 path"). The same callback stops the rows a
  caller no longer needs (`enough`): `generate`'s spare rows, once the rows before them give enough posts.
- **Seeds**: CTranslate2 seeds each worker thread's generator once, when that thread first samples; so a
  seeded call runs on a fresh generator (the weights loaded again, ~0.1 s for a 124M model) created right
  after `set_random_seed`: same seed, same texts. Unseeded calls use the cached generator.
  Seeded texts differ from the transformers path's for the same seed (another random stream, int8 weights).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from .. import modelfolder
from ..atomic import write_atomic
from ..modelfolder import CONFIG_FILE, INT8_DIR
from .framing import Framing, context_length

log = logging.getLogger(__name__)

MARKER = "mimicbot.json"  # in INT8_DIR, written before the folder is moved into place
COMPUTE_TYPE = "int8"  # int8 weights, fp32 activations on CPU (int8_float32)
WORKERS = 2  # an unseeded call's rows are split into this many batches, sampled side by side (Int8Engine)
_WEIGHTS_SUFFIXES = (".safetensors", ".bin")
_DEFAULT_SEED = 2**32 - 1  # CTranslate2's "no seed set": its generators seed from the system's entropy


def available() -> bool:
    """Is CTranslate2 installed (the `int8` extra)?"""
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


# -- the converted copy on disk --------------------------------------------------------------------------------


def fingerprint(model_dir: Path) -> list:
    """The weights a conversion was made from: name, size and mtime (whole seconds, which an archive keeps) of
    each weights file at the top of the model folder."""
    files = sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.name.endswith(_WEIGHTS_SUFFIXES))
    return [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in files]


def ready(model_dir: Path) -> bool:
    """Does the model folder hold an int8 copy made from the weights beside it?"""
    try:
        marker = json.loads((Path(model_dir) / INT8_DIR / MARKER).read_text(encoding="utf-8"))
        return marker.get("source") == fingerprint(model_dir)
    except (OSError, ValueError, AttributeError):
        return False


def convert(model_dir: Path) -> Path:
    """Convert the model in `model_dir` to int8 into `model_dir/ct2-int8`, atomically (see the module docstring).
    Raises on failure (an architecture CTranslate2 cannot convert, a full disk); the model folder is unchanged
    then."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    model_dir = Path(model_dir)
    source = fingerprint(model_dir)
    tmp = model_dir / f".{INT8_DIR}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with _padded_gpt2_vocabulary():
            TransformersConverter(str(model_dir), low_cpu_mem_usage=True).convert(
                str(tmp), quantization=COMPUTE_TYPE, force=True)
        write_atomic(tmp / MARKER, json.dumps({"source": source, "ctranslate2": ctranslate2.__version__,
                                                "quantization": COMPUTE_TYPE}))
        if fingerprint(model_dir) != source:
            raise RuntimeError(f"the weights in {model_dir} changed during the conversion")
        return modelfolder.install(tmp, model_dir / INT8_DIR)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _padded_gpt2_vocabulary:
    """CTranslate2 refuses a GPT-2 whose embedding has more rows than its tokenizer has tokens (the benchmark's
    124M-shaped model with the tiny tokenizer; GPT-2 variants padded to a multiple of 64): pad the vocabulary
    with tokens no text maps to, for the conversion only."""

    def __enter__(self):
        from ctranslate2.converters import transformers as T

        self.registry, self.old = T._MODEL_LOADERS, T._MODEL_LOADERS.get("GPT2Config")
        if self.old is not None:
            base = type(self.old)

            class Padded(base):
                def get_vocabulary(self, model, tokenizer):
                    tokens = super().get_vocabulary(model, tokenizer)
                    return tokens + [f"<|mimicbot-unused-{i}|>" for i in range(model.config.vocab_size - len(tokens))]

            self.registry["GPT2Config"] = Padded()
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            self.registry["GPT2Config"] = self.old


# -- converting older models in the background --------------------------------------------------------------


class Converter:
    """Converts models in the background, one at a time, each in a child process at low priority (niceness 10, or
    MIMICBOT_INT8_NICENESS; so neither the event loop nor the GIL of the serving process is touched; on a machine
    busy with other work it waits for idle CPU). A model whose conversion failed is not tried again
    by this process until its weights change (a retrained model is tried)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue: list[Path] = []
        self._pending: set[Path] = set()
        self._failed: set[tuple] = set()  # (folder, its weights' fingerprint)
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    def request(self, model_dir: Path) -> bool:
        """Queue `model_dir` for conversion (no-op if queued, running or failed before). True if queued now."""
        model_dir = Path(model_dir)
        with self._lock:
            if model_dir in self._pending or _key(model_dir) in self._failed:
                return False
            self._pending.add(model_dir)
            self._queue.append(model_dir)
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="int8-converter", daemon=True)
                self._thread.start()
        log.info("converting %s to int8 in the background", model_dir.name)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued conversion is done (tests, benchmarks). True if idle."""
        return self._idle.wait(timeout)

    def failed(self, model_dir: Path) -> bool:
        with self._lock:
            return _key(Path(model_dir)) in self._failed

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._idle.set()
                    self._thread = None
                    return
                model_dir = self._queue.pop(0)
            ok = False
            try:
                ok = self._convert_in_child(model_dir)
            except Exception:  # pragma: no cover - a process that cannot start: logged, the model stays fp32
                log.exception("int8 conversion of %s failed", model_dir.name)
            with self._lock:
                self._pending.discard(model_dir)
                if not ok:
                    self._failed.add(_key(model_dir))

    @staticmethod
    def _convert_in_child(model_dir: Path) -> bool:
        if not modelfolder.is_model(model_dir):  # removed meanwhile
            return True
        done = subprocess.run(
            [sys.executable, "-m", "bot.generation.ct2", str(model_dir)], capture_output=True, text=True,
            timeout=3600, cwd=Path(__file__).resolve().parents[2])
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
            log.warning("int8 conversion of %s failed (%s); it keeps generating with transformers",
                        model_dir.name, reason)
            return False
        log.info("converted %s to int8", model_dir.name)
        return True


def _key(model_dir: Path) -> tuple:
    try:
        return model_dir, tuple(tuple(f) for f in fingerprint(model_dir))
    except OSError:  # removed meanwhile
        return model_dir, ()


# -- sampling ---------------------------------------------------------------------------------------------------


class Int8Engine:
    """A converted model, ready to sample (sampling.sample's twin). `nbytes`: the int8 weights' size.

    `threads` cores (torch's thread count by default) serve an unseeded call as `workers` worker threads (WORKERS,
    at most one per core), each sampling its share of the rows as a batch of its own on `threads // workers` cores:
    CTranslate2's int8 steps on a few rows barely gain from a second core within one batch (on 2 cores capped to
    AVX2: 41.4 ms a step for 13 rows on two threads, 42.4 ms on one), while two batches of 7 and 6 rows, one on
    each core, ran 13 rows 1.4-1.66x faster (bench/README.md, "10 samples on the int8 path"). The workers share the
    weights. Two, not one per core: only two were measured, and each batch reads all the weights at each step, so
    many one-row batches could be held back by memory bandwidth on a large machine. A seeded call runs as one
    batch on a fresh generator (see the module docstring): which worker takes which batch is not fixed, so split
    rows could draw from another worker's random stream."""

    def __init__(self, model_dir: Path, threads: int | None = None, workers: int | None = None):
        import ctranslate2

        self.path = Path(model_dir) / INT8_DIR
        self.threads = threads or _threads()
        self.workers = max(1, min(self.threads, workers or WORKERS))
        self.generator = self._new_generator(self.workers)
        config = json.loads((Path(model_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
        self.context = context_length(config)
        self.nbytes = (self.path / "model.bin").stat().st_size  # the weights, as CTranslate2 holds them in memory
        self.version = ctranslate2.__version__

    def _new_generator(self, workers: int = 1):
        import ctranslate2

        return ctranslate2.Generator(str(self.path), device="cpu", compute_type=COMPUTE_TYPE,
                                     inter_threads=workers, intra_threads=max(1, self.threads // workers))

    def sample(self, tokenizer, prompt: str, n: int = 5, *, max_length: int = 160, min_length: int = 10,
               max_new_tokens: int | None = None, temperature: float = 1.0, top_p: float = 0.95, top_k: int = 50,
               seed: int | None = None, context: str | None = None,
               enough: Callable[[list[str | None]], bool] | None = None) -> list[str | None]:
        """As sampling.sample: `n` posts starting with `prompt`, None for a row that used its whole budget.

        `enough`, when given, is called with the posts of the rows finished so far in row order (rows 0..k, all
        finished), each time that run grows and some row is still running (never with all `n`); once it returns
        True the rows after it are stopped where they are and left out: the result is that run, shorter than `n`. The rows returned are the same as without `enough`
        (a row's tokens do not depend on the rows beside it being stopped later), so a caller that would have
        read the rows in order and stopped at the same point gets the same posts, sooner: `generate`'s spare rows
        are stopped once the rows before them already give enough posts (bench/README.md, "10 samples on the int8
        path"). It runs on CTranslate2's worker threads while this call holds sampling.LOCK: it must not take that
        lock nor wait on the calling thread; what it raises stops every row and is raised here."""
        import ctranslate2

        from .sampling import LOCK, check_params, fold, reading, stop_token_ids

        check_params(n, max_new_tokens, temperature, top_p, top_k, max_length, min_length)
        prompt = fold(prompt)
        eos = tokenizer.eos_token_id
        with LOCK:  # the tokenizer, and set_random_seed + a fresh generator for a seeded call
            stop = set(stop_token_ids(tokenizer).tolist())
            stops = Framing.of(tokenizer).stops
            ids, post_len, budget = reading(tokenizer, prompt, context, self.context, max_length=max_length,
                                            max_new_tokens=max_new_tokens)
            at_least = min(budget, max(0, min_length - post_len))
            start = tokenizer.convert_ids_to_tokens(ids)
            rows = _Rows(n, stop, lambda row, ended: _post(tokenizer, prompt, row, ended, stops), enough)
            options = dict(max_length=budget, min_length=at_least, end_token=[eos], return_end_token=True,
                           include_prompt_in_result=False, sampling_topk=top_k, sampling_topp=top_p,
                           sampling_temperature=temperature, callback=rows.step)
            if seed is None:  # the rows in one batch per worker (results and the callback's rows stay in order)
                results = self.generator.generate_batch([start] * n, max_batch_size=-(-n // self.workers),
                                                        **options)
            else:
                ctranslate2.set_random_seed(seed % _DEFAULT_SEED)
                try:
                    results = self._new_generator().generate_batch([start] * n, **options)
                finally:
                    ctranslate2.set_random_seed(_DEFAULT_SEED)
            if rows.error is not None:
                raise rows.error
            if rows.stopped:
                return rows.posts
            tokens = [r.sequences_ids[0] for r in results]
            ended = [done or any(t in stop for t in row) for done, row in zip(rows.ended, tokens)]
            return [_post(tokenizer, prompt, row, done, stops) for row, done in zip(tokens, ended)]


class _Rows:
    """The per-token callback of one generate_batch (CTranslate2 calls it from its own thread, for each new token
    of each row still running): the stop rule (a row ends after its first token that holds a line break or is
    end-of-text: CTranslate2's own end tokens would also be held back by min_length), and `enough` (see
    Int8Engine.sample)."""

    def __init__(self, n: int, stop: set[int], post: Callable[[list[int], bool], str | None],
                 enough: Callable[[list[str | None]], bool] | None):
        self.stop, self.post, self.enough = stop, post, enough
        self.ended = [False] * n
        self.finished = [False] * n
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.posts: list[str | None] = []
        self.done = 0  # rows 0..done-1 have finished
        self.stopped = False  # `enough` said so: every row still running stops
        self.error: Exception | None = None
        self.lock = threading.Lock()

    def step(self, step) -> bool:
        with self.lock:  # the workers call it from their own threads
            try:
                return self._step(step)
            except Exception as e:  # noqa: BLE001 - raised again by sample, in the caller's thread
                self.error, self.stopped = e, True
                return True

    def _step(self, step) -> bool:
        if self.stopped:
            return True
        row, token = step.batch_id, step.token_id
        ended = token in self.stop
        if self.enough is None:
            if ended:
                self.ended[row] = True
            return ended
        self.tokens[row].append(token)
        if ended or step.is_last:
            self.ended[row], self.finished[row] = ended, True
            self._advance()
        return ended or self.stopped

    def _advance(self) -> None:
        grown = False
        while self.done < len(self.finished) and self.finished[self.done]:
            self.posts.append(self.post(self.tokens[self.done], self.ended[self.done]))
            self.done += 1
            grown = True
        if grown and self.done < len(self.finished):  # all rows finished: nothing left to stop
            self.stopped = bool(self.enough(self.posts))


def _post(tokenizer, prompt: str, row: list[int], ended: bool, stops: list[int]) -> str | None:
    from .sampling import first_line, until

    return first_line(prompt + tokenizer.decode(until(list(row), stops))) if ended else None


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    """`python -m bot.generation.ct2 MODEL_DIR`: convert one model (the background converter's child)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bot.generation.ct2 MODEL_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    if hasattr(os, "nice"):  # behind the serving process, as training children are (MIMICBOT_INT8_NICENESS: 10)
        os.nice(int(os.environ.get("MIMICBOT_INT8_NICENESS", "10")))
    try:
        convert(Path(args[0]))
    except Exception as e:  # noqa: BLE001 - the parent logs the last line
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Converter", "Int8Engine", "available", "convert", "fingerprint", "ready"]
