"""Fine-tune a causal LM (GPT-2 by default) on a few people's posts: the huggingtweets recipe, on one page, top
to bottom.

    train(req, work_dir, on_event) -> the run's record (training.json)

runs in a training child process (bot/training/child.py) and does, in order:

1. **Base model**: "tiny" (the offline demo model, bot/training/tiny.py), a local folder, or a hub id: any
   Hugging Face causal LM (GPT-2, Llama, Qwen2, SmolLM, Mistral, Phi ...). With `lora`, its weights stay
   frozen and a LoRA adapter (peft) is trained on every linear layer instead; with `qlora`, over the base loaded
   4-bit on a CUDA GPU (bot/training/qlora.py).
2. **Seed**: the request's, or a random one; recorded, so a run can be repeated.
3. **Data**: 10 % of each account's posts (at least one) are held out for evaluation. With several
   accounts, each one's posts are repeated until it has as many characters as the largest. Posts are
   tokenised once; each epoch is a shuffled copy of the posts (the recipe's "4 shuffled copies"),
   joined as EOT + post + EOT + ... + EOT (BOS + post + EOS + ... for a tokenizer with its own beginning
   token: bot/generation/framing.py) and cut into packed blocks: posts run across block edges, nothing is
   padded. A reply whose parent is known is preceded by the parent in its own frame (parent + EOT + reply +
   EOT, kept together when shuffled), and the parent's tokens are left out of the loss: the model learns to
   answer what it reads, never to write the parent as a post of its own, and a plain post is trained
   exactly as before.
4. **Device and precision**: CUDA (bf16, else fp16 with a gradient scaler) or the CPU (bf16 autocast
   when the CPU does bf16 natively, else fp32 — and then a default block of 1,024 tokens is cut into 4
   blocks of 256 a step: the same tokens a step, less attention; every core, at a lower priority than the
   service). AdamW (fused where torch has it), cosine schedule with no warm-up, gradient clipping at 1.0,
   as the transformers Trainer that the recipe used does. Weights stay fp32; autocast computes in the lower precision.
5. **Eval**: loss and perplexity on the held-out posts, before and after training.
6. **Progress**: `on_event` gets phase events ("load", "eval", "train", "save") and progress events at
   most every PROGRESS_EVERY_S seconds, plus the first and the last step. An exception raised by
   `on_event` stops the run; nothing is published.
7. **Save** into `work_dir`: weights (or the adapter, naming its base), tokenizer, generation defaults,
   training.json, loss.png,
   anticopy.json, a few samples drawn as predictions.png, the card README.md; then **publish**: the
   finished folder is renamed to `<models_dir>/<model_id>`, replacing an older model of that id only now.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import torch

from ..atomic import write_atomic
from ..cleaning import DEFAULT_PROMPT, EOT, joined_chars
from ..devices import cpu_has_bf16
from ..errors import ConfigError, ValidationError
from ..generation import DEFAULTS, LoadedModel, generate
from ..generation.anticopy import build_index
from ..generation.framing import Framing, context_length
from ..modelfolder import ANTICOPY_FILE, LOSS_FILE, PREDICTIONS_FILE, TRAINING_FILE, install
from . import qlora
from .basemodel import base_kind
from .tracking import Tracker
from .card import write_card
from .pictures import loss_png, predictions_png
from .spec import TrainRequest, check_request, display_name_for
from .tiny import ensure_tiny_base, make_readable

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.5
MAX_GRAD_NORM = 1.0  # the transformers Trainer's default, which the recipe trained with
WEIGHT_DECAY = 0.0  # idem
MAX_BLOCK = 1024
SHORT_BLOCK = 256  # in fp32 on the CPU: blocks of 256 tokens, 4 a step (split_blocks)
CARD_SAMPLES = 5  # samples drawn for predictions.png
GENERATION = {"do_sample": True, **DEFAULTS}  # the recipe's, saved as the model's defaults (generation_config.json)

Event = Callable[[dict], None]


def train(req: TrainRequest, work_dir: Path, on_event: Event) -> dict:
    """Fine-tune, save into `work_dir`, publish to `<models_dir>/<model_id>`; returns the training.json dict."""
    started_at, started = datetime.now(UTC), time.perf_counter()
    work_dir, models_dir = Path(work_dir), Path(req.models_dir)
    check_request(req)
    work_dir.mkdir(parents=True, exist_ok=True)  # the pool removes it, whatever happens
    seed = req.seed if req.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    device = pick_device(req.device)
    if req.qlora:
        qlora.check(device)  # a GPU and bitsandbytes, before anything is loaded

    # 1. base model ------------------------------------------------------------------------------
    on_event({"type": "phase", "phase": "load"})
    source, kind = resolve_base(req.base_model, models_dir)
    model, tokenizer = load_base(source, req.base_model, qlora.load_kwargs(device) if req.qlora else None)
    framing = Framing.of(tokenizer)
    context = context_length(model.config) or MAX_BLOCK
    precision = pick_precision(req.precision, device)
    threads = pick_threads(device, model)
    set_dropout(model, req.dropout)
    frozen_embedding = req.freeze_embedding and not req.lora  # an adapter freezes every base weight anyway
    if frozen_embedding:
        freeze_tied_embedding(model)
    if req.lora:
        model = with_lora(qlora.prepare(model) if req.qlora else model, req.lora_rank,
                          base_reference(source, kind, req.base_model))
    if not req.qlora:  # a 4-bit base is already on its GPU (its device_map)
        model.to(device)
    autocast = autocast_for(device, precision)

    # 2-3. data ----------------------------------------------------------------------------------
    splits = [split_held_out(a.texts, req.eval_fraction, rng) for a in req.accounts]
    train_posts = balance([kept for kept, _ in splits])
    held_out = [post for _, out in splits for post in out]
    posts = [post for account in train_posts for post in account]
    post_ids = tokenize(tokenizer, posts)
    parents = {reply: parent for a in req.accounts for reply, parent in (a.parents or {}).items()}
    context_ids = tokenize(tokenizer, [parents.get(post, "") for post in posts])  # [] for a plain post
    eval_ids = join_posts(tokenize(tokenizer, held_out), framing) if held_out else []
    stream_len = len(join_units(post_ids, context_ids, framing)[0])  # the same every epoch
    block_size, split = split_blocks(pick_block_size(req.block_size, context, stream_len), req.block_size, device,
                                     precision)
    per_step = req.batch_size * split  # blocks a step: the same tokens a step whether split or not
    blocks_per_epoch = len(block_starts(stream_len, block_size))
    total = req.epochs * math.ceil(blocks_per_epoch / per_step)
    if req.max_steps:
        total = min(total, req.max_steps)

    # 4. optimiser and schedule ------------------------------------------------------------------
    optimizer, fused = make_optimizer(model, req.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    # 5. eval before -----------------------------------------------------------------------------
    on_event({"type": "phase", "phase": "eval"})
    loss_before = evaluate(model, eval_ids, block_size, device, autocast)

    # 6. the loop --------------------------------------------------------------------------------
    tracker = Tracker.for_request(req)  # W&B, when MIMICBOT_WANDB asks for it (bot/training/tracking.py)
    on_event({"type": "phase", "phase": "train"})
    progress = Progress(on_event, total)
    losses: list[float] = []
    step = tokens = 0
    model.train()
    for _ in range(req.epochs):
        order = rng.sample(range(len(post_ids)), len(post_ids))  # this epoch's shuffled copy of the posts
        ids, labels = join_units([post_ids[i] for i in order], [context_ids[i] for i in order], framing)
        blocks, label_blocks = pack(ids, block_size), pack(labels, block_size)
        for first in range(0, len(blocks), per_step):
            if step == total:
                break
            batch = blocks[first:first + per_step].to(device)
            with autocast():
                loss = model(input_ids=batch, labels=label_blocks[first:first + per_step].to(device)).loss
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            step, tokens = step + 1, tokens + batch.numel()
            losses.append(loss.item())
            progress.update(step, losses[-1], tokens)
            tracker.log(step, {"loss": losses[-1]})
    train_seconds = progress.elapsed()

    # 5. eval after ------------------------------------------------------------------------------
    on_event({"type": "phase", "phase": "eval"})
    loss_after = evaluate(model, eval_ids, block_size, device, autocast)

    # 7. save, then publish ----------------------------------------------------------------------
    on_event({"type": "phase", "phase": "save"})
    model.eval()
    save_model(model, tokenizer, work_dir)
    info = {
        "model_id": req.model_id,
        "display_name": display_name_for([a.display_name or a.handle for a in req.accounts]),
        "kind": "BOT" if len(req.accounts) == 1 else "CYBORG",
        "accounts": [
            {"handle": a.handle, "display_name": a.display_name, "network": a.network, "avatar_url": a.avatar_url,
             "stats": a.stats, "train_posts": len(kept), "held_out_posts": len(out),
             "train_chars": joined_chars(balanced),
             "replies_with_parent": sum(1 for post in kept if post in (a.parents or {}))}
            for a, (kept, out), balanced in zip(req.accounts, splits, train_posts)
        ],
        "base_model": req.base_model,
        "base_model_kind": kind,
        "base_model_source": base_reference(source, kind, req.base_model),
        "architecture": model_type(model),
        "adapter": "lora" if req.lora else None,
        "quantization": qlora.record() if req.qlora else None,  # the base's, while training only
        "framing": {"start": tokenizer.convert_ids_to_tokens(framing.start) if framing.start is not None else None,
                    "end": tokenizer.eos_token},
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "hyperparameters": {
            "epochs": req.epochs, "lr": req.learning_rate, "schedule": "cosine, no warm-up",
            "optimizer": "AdamW (fused)" if fused else "AdamW", "weight_decay": WEIGHT_DECAY,
            "max_grad_norm": MAX_GRAD_NORM, "dropout": req.dropout, "batch_size": req.batch_size,
            **({"frozen_embedding": True} if frozen_embedding else {}),
            "block_size": block_size, **({"blocks_per_step": per_step} if split > 1 else {}),
            "seed": seed, "eval_fraction": req.eval_fraction, "max_steps": req.max_steps,
            **({"lora_rank": req.lora_rank, "lora_alpha": 2 * req.lora_rank,
                "lora_targets": sorted(model.peft_config["default"].target_modules)} if req.lora else {}),
        },
        "device": str(device),
        "precision": precision,
        "cpu_threads": threads,
        "steps": step,
        "blocks_per_epoch": blocks_per_epoch,
        "trained_tokens": tokens,
        "tokens_per_s": round(tokens / train_seconds, 1) if train_seconds else None,
        "eval": {
            "held_out_posts": len(held_out), "held_out_tokens": len(eval_ids),
            "loss_before": _finite(loss_before), "loss_after": _finite(loss_after),
            "perplexity_before": perplexity(loss_before), "perplexity_after": perplexity(loss_after),
        },
        "losses": [round(x, 4) for x in losses],
        "versions": versions(),
        "created_at": started_at.isoformat(timespec="seconds"),
    }
    info["generation"] = write_extras(work_dir, info, model, tokenizer, req, seed)
    info["int8"] = convert_int8(work_dir) if req.int8 and not req.lora else None  # a persona runs over its base
    info["train_seconds"] = round(train_seconds, 2)
    info["duration_s"] = round(time.perf_counter() - started, 2)
    info["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(work_dir / TRAINING_FILE, info)
    write_card(work_dir)
    final = install(work_dir, models_dir / req.model_id)
    tracker.finish(info, final)
    return {**info, "path": str(final)}


def convert_int8(work_dir: Path) -> dict | None:
    """The int8 copy for fast generation (bot/generation/ct2.py), made before the model is published; None without
    CTranslate2. A failure is recorded, not raised: the model still generates with transformers."""
    from ..generation import ct2

    if not ct2.available():
        return None
    started = time.perf_counter()
    try:
        ct2.convert(work_dir)
    except Exception as e:  # noqa: BLE001 - an architecture CTranslate2 cannot convert, a full disk, ...
        log.warning("int8 conversion failed (%s: %s); the model generates with transformers", type(e).__name__, e)
        return {"converted": False, "error": f"{type(e).__name__}: {e}"[:300]}
    return {"converted": True, "seconds": round(time.perf_counter() - started, 2)}


# -- 1. base model ------------------------------------------------------------------------------------


def resolve_base(name: str, models_dir: Path) -> tuple[str, str]:
    """(what from_pretrained gets, "tiny" | "local" | "hub"). "tiny", "tiny-llama", "tiny-qwen2": the offline
    demo models (bot/training/tiny.py)."""
    kind = base_kind(name)
    if kind == "tiny":
        return str(ensure_tiny_base(models_dir, name)), kind
    if kind == "local":
        return str(Path(name).expanduser()), kind
    if kind == "missing":
        raise ConfigError(f"cannot load base model {name!r}: no such model folder")
    return name, kind


def load_base(source: str, name: str, quantized: dict | None = None):
    """The model (fp32 weights, or as `quantized` loads it: qlora.load_kwargs) and its tokenizer, which must have
    an end-of-sequence token (it ends posts)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress goes through on_event, not to the job's log
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **(quantized or {"dtype": torch.float32}))
    except (OSError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot load base model {name!r}: {reason}") from None
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"cannot use base model {name!r}: its tokenizer has no end-of-sequence token to end "
                          "posts with")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def base_reference(source: str, kind: str, name: str) -> str:
    """How an adapter names its base: the hub id, or the absolute path of a local base (the tiny one too)."""
    return name if kind == "hub" else str(Path(source).resolve())


def lora_targets(model) -> list[str]:
    """The names (as peft matches them: the last part of the module's path) of the model's linear layers, the output
    layer included: for GPT-2 c_attn, c_fc, c_proj and lm_head; for Llama/Qwen2 q/k/v/o_proj, gate/up/down_proj and
    lm_head. peft's "all-linear" leaves the output layer out; with it an adapter learns a persona's words about as
    fast as a full fine-tune (bench/README.md, "Quality guard"), without it far slower."""
    from transformers.pytorch_utils import Conv1D

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, (torch.nn.Linear, Conv1D))})


def with_lora(model, rank: int, base: str):
    """The model wrapped by peft with a LoRA adapter of `rank` on every linear layer, the output layer included
    (lora_targets), alpha 2 x rank, no dropout; only the adapter's weights train. Where the output layer shares
    its weight with the input embedding (GPT-2), only the output side is adapted: the adapter is never merged."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("LoRA training needs peft: pip install 'mimicbot[lora]'") from None
    model.config._name_or_path = base  # recorded as the adapter's base_model_name_or_path
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=lora_targets(model),
                        task_type="CAUSAL_LM", base_model_name_or_path=base)
    with warnings.catch_warnings():  # "a tied layer is part of the adapter": on purpose, see above
        warnings.filterwarnings("ignore", message=".*tied layer is part of the adapter.*")
        return get_peft_model(model, config)


def freeze_tied_embedding(model) -> None:
    """The input embedding frozen, and with it the output layer where the two are one tensor (GPT-2's wte: 38.6 M
    of 124 M weights). Training then skips the output matmul's weight gradient, and AdamW and the clipping norm
    skip those weights."""
    model.get_input_embeddings().weight.requires_grad_(False)


def model_type(model) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


# -- 3. data --------------------------------------------------------------------------------------------


def split_held_out(texts: list[str], fraction: float, rng: random.Random) -> tuple[list[str], list[str]]:
    """(kept for training, held out): `fraction` of the posts at random, at least one, never all of them."""
    n = len(texts)
    k = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, round(n * fraction)))
    held = set(rng.sample(range(n), k))
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


def balance(accounts: list[list[str]]) -> list[list[str]]:
    """Each account's posts repeated (whole copies, then from the start again) until it has as many
    characters as the largest account, so that one person does not drown out the others (the recipe)."""
    target = max(joined_chars(posts) for posts in accounts)
    balanced = []
    for posts in accounts:
        unit = len(EOT)  # k copies hold k * (chars + unit) - unit joined characters
        repeated = posts * max(1, (target + unit) // (joined_chars(posts) + unit))
        have = joined_chars(repeated)
        i = 0
        while have < target:
            post = posts[i % len(posts)]
            repeated.append(post)
            have += len(post) + len(EOT)
            i += 1
        balanced.append(repeated)
    return balanced


def tokenize(tokenizer, posts: list[str]) -> list[list[int]]:
    """Token ids of each post, each distinct text tokenised once. A literal "<|endoftext|>" inside a post
    stays text: only the joins between posts are end-of-text tokens."""
    distinct = list(dict.fromkeys(posts))
    ids = tokenizer(distinct, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    by_text = dict(zip(distinct, ids))
    return [by_text[p] for p in posts]


def join_posts(post_ids: list[list[int]], framing: Framing | int) -> list[int]:
    """The recipe's text as token ids: EOT + posts joined by EOT + EOT (GPT-2; an int is its EOT id), or each
    post framed BOS + post + EOS for a tokenizer with a beginning token (bot/generation/framing.py)."""
    return join_units(post_ids, [[]] * len(post_ids), framing)[0]


def join_units(post_ids: list[list[int]], context_ids: list[list[int]], framing: Framing | int
               ) -> tuple[list[int], list[int]]:
    """The training stream and its labels. Without contexts: `join_posts`, every token a label. A post with a
    context (a reply's parent) is preceded by it, framed, and those tokens are not labels (IGNORE)."""
    framing = framing if isinstance(framing, Framing) else Framing(end=framing)
    return framing.stream(post_ids, context_ids)


def pick_block_size(requested: int | None, context: int, stream_len: int) -> int:
    """The request's block size, else min(1024, the model's context); never more than the text holds."""
    if requested and requested > context:
        raise ValidationError(f"block_size {requested} is longer than the base model's context ({context} tokens)")
    return min(requested or min(MAX_BLOCK, context), stream_len)


def split_blocks(block_size: int, requested: int | None, device: torch.device, precision: str) -> tuple[int, int]:
    """(block size, how many of them make one of `block_size`'s steps). Training in fp32 on the CPU (a CPU without
    native bf16), a default block of 1,024 tokens or more is cut into blocks of SHORT_BLOCK, as many a step: posts
    are ~20 tokens, so the longer context buys little, while attention's cost grows with the block. Measured
    faster at an equal held-out loss (bench/README.md, "Training without bf16"). A block size asked for is kept."""
    short = device.type == "cpu" and precision == "fp32" and requested is None
    if not short or block_size < 4 * SHORT_BLOCK or block_size % SHORT_BLOCK:
        return block_size, 1
    return SHORT_BLOCK, block_size // SHORT_BLOCK


def block_starts(length: int, block_size: int) -> list[int]:
    """Where each full block starts. The tail that does not fill a block becomes one more block ending at
    the text's end (overlapping the one before it), so no post is dropped and no block is padded."""
    starts = list(range(0, length - block_size + 1, block_size))
    if starts and starts[-1] + block_size < length:
        starts.append(length - block_size)
    return starts


def pack(ids: list[int], block_size: int) -> torch.Tensor:
    """The token stream as a (blocks, block_size) tensor of consecutive tokens, no padding."""
    stream = torch.tensor(ids, dtype=torch.long)
    return torch.stack([stream[s:s + block_size] for s in block_starts(len(ids), block_size)])


# -- 4. device, precision, optimiser --------------------------------------------------------------------


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


SMALL_MODEL = 10_000_000  # parameters; below this a model trains on one thread (see pick_threads)


def pick_threads(device: torch.device, model=None) -> int:
    """On the CPU, every core (torch's default), unless OMP_NUM_THREADS says otherwise or the model is small. The
    serving process is kept responsive by priority, not by idle cores: training children run at a lower scheduling
    priority (bot/training/child.py). Measured on 2 cores with the 124M model: 2 threads trained 1.6x faster than 1.
    A small model's operations are too small to split: the offline tiny model (0.55 M parameters) trained 1.1x
    faster on 2 threads than on 1 on an idle machine, but 12x slower (808 against 9,907 tokens/s) with other
    work on the cores (load average 3.4), the two threads waiting for each other at every operation. The 10 M line
    between the two measured sizes is a judgement, not a measurement."""
    if device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        small = model is not None and sum(p.numel() for p in model.parameters()) < SMALL_MODEL
        torch.set_num_threads(1 if small else os.cpu_count() or 1)
    return torch.get_num_threads()


def set_dropout(model, p: float | None) -> None:
    """Every dropout layer of the model at probability `p` (None: leave the model's own)."""
    if p is None:
        return
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def pick_precision(requested: str, device: torch.device) -> str:
    """fp32, bf16 or fp16 (autocast; weights stay fp32). Auto: bf16 where the hardware has it."""
    if requested != "auto":
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision bf16 was asked for, but this GPU does not support it")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast_for(device: torch.device, precision: str) -> Callable:
    """A context-manager factory: autocast to bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def make_optimizer(model, lr: float) -> tuple[torch.optim.Optimizer, bool]:
    """AdamW, fused (one kernel for all parameters) where this torch and device support it."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY, fused=True), True
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY), False


# -- 5. eval ---------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, ids: list[int], block_size: int, device: torch.device, autocast: Callable) -> float | None:
    """Mean loss per predicted token over the held-out stream, cut into blocks like the training text (the
    last one may be short, so each token is scored once). None when nothing is held out."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(ids), block_size):
        chunk = ids[start:start + block_size]
        if len(chunk) < 2:
            continue
        x = torch.tensor([chunk], dtype=torch.long, device=device)
        with autocast():
            loss = model(input_ids=x, labels=x).loss
        total += loss.float().item() * (len(chunk) - 1)
        count += len(chunk) - 1
    model.train(was_training)
    return total / count if count else None


def _finite(x: float | None) -> float | None:
    return round(x, 4) if x is not None and math.isfinite(x) else None


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss) or loss > 700:
        return None
    return round(math.exp(loss), 2)


# -- 6. progress -----------------------------------------------------------------------------------------


class Progress:
    """Progress events at most every PROGRESS_EVERY_S seconds, and always for the first and last steps."""

    def __init__(self, on_event: Event, total: int):
        self.on_event, self.total = on_event, total
        self.started = time.perf_counter()
        self.sent_at = -math.inf  # the first step is reported at once

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def update(self, step: int, loss: float, tokens: int) -> None:
        now = time.perf_counter()
        if now - self.sent_at < PROGRESS_EVERY_S and step < self.total:
            return
        self.sent_at = now
        elapsed = now - self.started
        self.on_event({"type": "progress", "phase": "train", "step": step, "total": self.total, "loss": loss,
                       "tokens_per_s": tokens / elapsed if elapsed else 0.0,
                       "eta_s": elapsed / step * (self.total - step)})


# -- 7. saving and publishing ------------------------------------------------------------------------


def save_model(model, tokenizer, out: Path) -> None:
    """Weights (or the LoRA adapter), tokenizer and the recipe's generation defaults. `config.prefix` is what
    the transformers text-generation pipeline puts before every prompt, as huggingtweets' models did: the
    end-of-text token for GPT-2, the beginning token for a tokenizer that has one and does not add it itself."""
    from transformers import GenerationConfig

    framing = Framing.of(tokenizer)
    prefix = pipeline_prefix(tokenizer, framing)
    model.config.prefix = prefix
    generation = GenerationConfig(**GENERATION, bos_token_id=framing.start if framing.start is not None else framing.end,
                                  eos_token_id=framing.end, pad_token_id=tokenizer.pad_token_id, prefix=prefix)
    model.generation_config = generation
    if hasattr(model, "peft_config"):
        # only the adapter's own matrices: the output layer's adapter makes peft save the (tied) embedding whole
        # by default, 150 MB of the base's unchanged weights in every persona of a 124M base
        model.save_pretrained(out, save_embedding_layers=False)
    else:
        model.save_pretrained(out)
    generation.save_pretrained(out)  # an adapter's save_pretrained writes none
    tokenizer.save_pretrained(out)
    make_readable(out)


def pipeline_prefix(tokenizer, framing: Framing) -> str:
    """The text `pipeline()` should put before a prompt so that the model reads what it read before every post."""
    added = tokenizer("a")["input_ids"][:1]  # a tokenizer may add its beginning token by itself
    head = framing.prompt([])
    return "" if added == head[-1:] and len(head) == 1 else tokenizer.decode(head)


def write_extras(out: Path, info: dict, model, tokenizer, req: TrainRequest, seed: int) -> dict:
    """loss.png, anticopy.json, and a few samples (refused when they copy a post) drawn as predictions.png.
    Returns the generation record for training.json."""
    loss_png(out / LOSS_FILE, info["losses"])
    index = build_index([t for a in req.accounts for t in a.texts])  # every kept post, held-out ones too
    index.save(out / ANTICOPY_FILE)
    result = generate(LoadedModel(req.model_id, model, tokenizer, dict(DEFAULTS), index), DEFAULT_PROMPT,
                      CARD_SAMPLES, seed=seed, extra_rounds=1)
    predictions_png(out / PREDICTIONS_FILE, info["accounts"], DEFAULT_PROMPT, result.texts)
    return {**GENERATION, "prefix": model.config.prefix, "prompt": DEFAULT_PROMPT, "samples": result.texts,
            "refused": result.rejected}


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def versions() -> dict:
    import transformers

    found = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}
    try:
        import peft
    except ImportError:
        return found
    return {**found, "peft": peft.__version__}
