"""A small pretrained GPT-2-family base, made on this machine (issue 13, ask 4): the quality guard compares a LoRA
persona with a full fine-tune of the same base, which random weights cannot show (an adapter of rank r over a
random base has nothing to adapt). No pretrained weights can be downloaded here, so one is pretrained locally.

The text is general English prose that ships with the installed software, never the persona's posts:

- the Python documentation's topics (`pydoc_data/topics.py`, the standard library's own copy of the language
  reference: about 0.5 MB of prose),
- the docstrings of the standard library's modules, classes and functions (a fixed list of modules, below),
- the posts of the *other* bundled sample account (`grace_gardens`): short social posts, the register the personas
  write in. The persona of the guard (`ada_bytes`) is left out of the tokenizer and of the pretraining.

Paragraphs are the documents, joined by `<|endoftext|>` as posts are. A byte-level BPE tokenizer is trained on
that text (as bot/training/tiny.py builds the tiny one), then a 4-layer GPT-2 (256 wide, 4 heads, 256-token
context, about 4.2 M parameters with the embeddings) is trained from scratch for a wall-time budget (default
600 s) with the product trainer's pieces (bf16 autocast where the CPU has it, fused AdamW, no dropout), cosine
schedule over the steps the first ones predict. 2 % of the paragraphs are held out to show that it learned.

The result is cached in `bench/.cache/pretrained-base-<settings>/` (a `pretrain.json` beside the weights says how it
was made); a rerun with the same settings uses it.

    python bench/pretrain_base.py [--seconds 600] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import CACHE, sample_posts  # noqa: E402

PERSONA = "ada_bytes"  # the guard's persona: never in the pretraining text
OTHER_ACCOUNTS = ("grace_gardens",)
STDLIB_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "concurrent.futures", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions",
    "functools", "gettext", "glob", "gzip", "hashlib", "heapq", "html", "http.client", "http.server", "imaplib",
    "inspect", "io", "ipaddress", "itertools", "json", "locale", "logging", "mailbox", "math", "mimetypes",
    "multiprocessing", "numbers", "operator", "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random",
    "re", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "smtplib", "socket", "socketserver",
    "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "timeit", "tokenize", "trace", "traceback", "typing", "unittest", "urllib.parse", "urllib.request", "uuid",
    "warnings", "wave", "weakref", "xml.dom.minidom", "xml.etree.ElementTree", "zipfile", "zoneinfo",
)
VOCAB_SIZE = 4096
SHAPES = {  # name -> GPT-2 shape; `small` is the guard's base, `wide` a second size (does a LoRA rate transfer?)
    "small": {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_positions": 256},  # 4.27 M parameters
    "wide": {"n_layer": 6, "n_embd": 512, "n_head": 8, "n_positions": 256},  # 21 M parameters
}
SHAPE = SHAPES["small"]
BLOCK, BATCH, LR, SEED = 256, 8, 1e-3, 0


def prose(text: str) -> list[str]:
    """Paragraphs of running text: whitespace folded, code-like and very short paragraphs dropped."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in para.splitlines()]
        if not lines or any(line.startswith((">>>", "...", "$ ", "|", "+-", "==", "--")) for line in lines):
            continue
        para = " ".join(line for line in lines if line)
        letters = sum(c.isalpha() or c == " " for c in para)
        if len(para) >= 60 and letters >= 0.85 * len(para):
            out.append(para)
    return out


def docstrings(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    found = [inspect.getdoc(module) or ""]
    for _, obj in sorted(vars(module).items()):
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            found.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                found += [inspect.getdoc(m) or "" for _, m in sorted(vars(obj).items()) if inspect.isfunction(m)]
    return found


def corpus() -> tuple[list[str], dict]:
    """The pretraining documents (paragraphs and posts) and where they came from."""
    from pydoc_data.topics import topics

    docs_topics = [p for _, text in sorted(topics.items()) for p in prose(text)]
    docs_strings = list(dict.fromkeys(p for m in STDLIB_MODULES for d in docstrings(m) for p in prose(d)))
    posts = sample_posts(OTHER_ACCOUNTS)
    sources = {"pydoc_data.topics paragraphs": len(docs_topics), "stdlib docstring paragraphs": len(docs_strings),
               f"posts of {', '.join(OTHER_ACCOUNTS)}": len(posts)}
    docs = docs_topics + docs_strings + posts
    sources["characters"] = sum(map(len, docs))
    return docs, sources


def settings_key(seconds: float, shape: str = "small") -> str:
    blob = json.dumps({"shape": SHAPES[shape], "vocab": VOCAB_SIZE, "block": BLOCK, "batch": BATCH, "lr": LR,
                       "seed": SEED,
                       "seconds": seconds, "modules": STDLIB_MODULES, "others": OTHER_ACCOUNTS, "v": 1})
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def base_dir(seconds: float = 600, shape: str = "small") -> Path:
    return CACHE / f"pretrained-base-{settings_key(float(seconds), shape)}"


def ensure_pretrained_base(seconds: float = 600, force: bool = False, shape: str = "small") -> Path:
    """The pretrained base's folder, made once per settings (a rerun skips it)."""
    out = base_dir(seconds, shape)
    if (out / "pretrain.json").exists() and not force:
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pretrain-", dir=CACHE))
    try:
        pretrain(tmp, seconds, shape)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def pretrain(out: Path, seconds: float, shape: str = "small") -> dict:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from bot.cleaning import EOT
    from bot.training import trainer as T

    started = time.perf_counter()
    docs, sources = corpus()
    print("corpus:", sources, flush=True)
    rng = random.Random(SEED)
    rng.shuffle(docs)
    n_held = max(1, len(docs) // 50)
    held, kept = docs[:n_held], docs[n_held:]

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(kept, vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[EOT], show_progress=False)
    with tempfile.TemporaryDirectory() as files:
        bpe.save_model(files)
        tokenizer = GPT2TokenizerFast.from_pretrained(files, model_max_length=SHAPE["n_positions"])
    tokenizer.pad_token = tokenizer.eos_token
    eot = tokenizer.convert_tokens_to_ids(EOT)
    ids = T.tokenize(tokenizer, kept)
    stream = T.join_posts(ids, eot)
    held_stream = T.join_posts(T.tokenize(tokenizer, held), eot)
    blocks = T.pack(stream, BLOCK)
    print(f"tokenizer: {len(tokenizer)} tokens; {len(stream):,} training tokens, {len(held_stream):,} held out",
          flush=True)

    torch.manual_seed(SEED)
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **SHAPES[shape])
    model = GPT2LMHeadModel(config)
    device = torch.device("cpu")
    precision = T.pick_precision("auto", device)
    autocast = T.autocast_for(device, precision)
    threads = T.pick_threads(device)
    optimizer, _ = T.make_optimizer(model, LR)
    loss_before = T.evaluate(model, held_stream, BLOCK, device, autocast)

    # the cosine schedule needs a step count: the first steps' pace predicts it, then it is fixed
    total, step, tokens, losses = None, 0, 0, []
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(SEED))
    model.train()
    train_started = time.perf_counter()
    while time.perf_counter() - train_started < seconds:
        if total is None and step == 5:
            total = max(10, int(seconds / ((time.perf_counter() - train_started) / step)))
        lr = LR * (min(1.0, (step + 1) / 20) if total is None else
                   0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        pick = order[(step * BATCH) % len(order):][:BATCH]
        if len(pick) < BATCH:
            pick = order[:BATCH]
        batch = blocks[pick]
        with autocast():
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), T.MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step, tokens = step + 1, tokens + batch.numel()
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"  step {step} loss {sum(losses[-50:]) / 50:.3f} ({time.perf_counter() - train_started:.0f} s)",
                  flush=True)
    train_seconds = time.perf_counter() - train_started
    model.eval()
    loss_after = T.evaluate(model, held_stream, BLOCK, device, autocast)
    model.generation_config.pad_token_id = eot
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {
        "what": "a small GPT-2 pretrained on this machine for the LoRA quality guard (bench/pretrain_base.py)",
        "shape": SHAPES[shape], "shape_name": shape, "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "sources": sources, "persona_left_out": PERSONA, "training_tokens_available": len(stream),
        "held_out_tokens": len(held_stream), "block_size": BLOCK, "batch_size": BATCH, "lr": LR,
        "schedule": "20-step warm-up, then cosine over the steps the first 5 predict", "precision": precision,
        "threads": threads, "seconds_budget": seconds, "steps": step, "tokens_seen": tokens,
        "epochs_seen": round(tokens / len(stream), 2), "train_seconds": round(train_seconds, 1),
        "tokens_per_s": round(tokens / train_seconds, 1),
        "held_out_loss_before": round(loss_before, 4), "held_out_loss_after": round(loss_after, 4),
        "load_average_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "pretrain.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2), flush=True)
    return record


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600, help="pretraining wall time (default 600)")
    ap.add_argument("--force", action="store_true", help="pretrain again even if cached")
    ap.add_argument("--shape", default="small", choices=sorted(SHAPES), help="the base's shape (default small)")
    ap.add_argument("--corpus", action="store_true", help="only print the corpus's size")
    a = ap.parse_args()
    if a.corpus:
        docs, sources = corpus()
        print(sources, "\n\n".join(docs[:3]), sep="\n")
        return
    print("load average", " ".join(Path("/proc/loadavg").read_text().split()[:3]), flush=True)
    path = ensure_pretrained_base(a.seconds, a.force, a.shape)
    print("pretrained base:", path)
    print(json.loads((path / "pretrain.json").read_text()))


if __name__ == "__main__":
    main()
