"""What a training job needs, as plain JSON-able data, so it can cross a process (or a Ray) boundary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import NotEnoughData, ValidationError


RECIPE_LR = 1.372e-4  # huggingtweets' learning rate, for a full fine-tune
# LoRA: rank 6 on every linear layer, the output layer included (trainer.with_lora), alpha = 2 x rank, and a higher
# learning rate (only the small adapter matrices learn, from zero). Chosen by measurement: bench/README.md, "LoRA"
# and "Quality guard". Rank 6 is the largest that keeps 50 personas over a 124M base under 1.5x one whole model's
# memory with the output layer's adapter (rank 8: 1.64x by count), 0.03-0.24 nats of held-out loss behind rank 8.
# 1e-2 learned best on two bases pretrained here (4.3 M and 21 M), 1e-3 worst; 3e-3 is a step toward the usual
# rates of deeper 100M-1B bases, which could not be measured here.
LORA_RANK = 6
LORA_LR = 3e-3
MAX_LORA_RANK = 256


@dataclass
class AccountData:
    """One account's side of a training run: who, their kept (cleaned) posts, and the card's statistics."""

    handle: str
    display_name: str
    network: str = "x"
    avatar_url: str | None = None
    texts: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # downloaded, retweets, short, kept, chars
    # replies among `texts` whose parent is known: reply text -> the parent (cleaned, its opening @mentions
    # dropped). The trainer puts the parent before the reply, outside the loss (see trainer.py, step 3).
    parents: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainRequest:
    """Everything the trainer reads. Defaults are the huggingtweets recipe's."""

    model_id: str
    accounts: list[AccountData]
    models_dir: str
    base_model: str = "gpt2"  # a hub id, a local directory, or "tiny" (offline demo/test model)
    epochs: int = 4
    lr: float | None = None  # None: the recipe's 1.372e-4 for a full fine-tune, LORA_LR for an adapter
    block_size: int | None = None  # None: min(1024, the model's context)
    batch_size: int = 1  # blocks per optimizer step
    seed: int | None = None  # None: random, recorded in training.json
    eval_fraction: float = 0.1
    max_steps: int | None = None  # cap for tests and demos
    device: str = "auto"  # auto, cpu, cuda
    precision: str = "auto"  # auto, fp32, bf16, fp16
    # Dropout while fine-tuning. The recipe kept GPT-2's 0.1; 0 trains 2.6x faster per step on a CPU (no random
    # masks, and attention takes the fused flash kernel) at an equal or better held-out loss (bench/README.md).
    # None keeps the base model's own.
    dropout: float | None = 0.0
    # Convert the model to int8 after training, for fast generation (bot/generation/ct2.py), when CTranslate2 is
    # installed (the `int8` extra). The service sets it from MIMICBOT_INT8 (auto: on).
    int8: bool = False
    # Train a LoRA adapter (peft) instead of every weight: the model folder holds the adapter (a few MB) and names
    # its base. Off by default: a full fine-tune is the recipe's, and for GPT-2 the default (see README).
    lora: bool = False
    lora_rank: int = LORA_RANK
    # QLoRA: the base loaded 4-bit (NF4, bitsandbytes) on a CUDA GPU while the adapter trains, for a base that does
    # not fit the card otherwise (bot/training/qlora.py). Needs `lora`; the adapter saved is an ordinary one.
    qlora: bool = False
    # Freeze the input embedding, which for GPT-2 is also the output layer (38.6 M of 124 M weights): training skips
    # that layer's weight gradient and its AdamW update. Off: measured without bf16 (bench/README.md, "Training
    # without bf16"), it cost held-out loss (4.33 -> 4.88 on a small pretrained base) for 1.0-1.2x the speed.
    freeze_embedding: bool = False

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (LORA_LR if self.lora else RECIPE_LR)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainRequest:
        d = dict(d)
        d["accounts"] = [a if isinstance(a, AccountData) else AccountData(**a) for a in d["accounts"]]
        return cls(**d)


def model_id_for(handles: list[str]) -> str:
    """The recipe's model id: processed handles, de-duplicated, sorted, joined by '-'."""
    return "-".join(sorted(set(handles)))


def display_name_for(names: list[str]) -> str:
    """The recipe's display name: the accounts' names in input order joined by ' & '."""
    return " & ".join(names)


def check_request(req: TrainRequest) -> None:
    """Refuse, with a specific reason, a request that cannot train."""
    if not req.model_id or Path(req.model_id).name != req.model_id or req.model_id.startswith((".", "_")):
        raise ValidationError(f"model id {req.model_id!r} cannot be a folder name in the models directory")
    if not req.accounts:
        raise NotEnoughData("no accounts to train on")
    for a in req.accounts:
        if not [t for t in a.texts if t.strip()]:
            raise NotEnoughData(f"@{a.handle} has no kept posts to train on")
    check_hyperparameters(req)


def check_hyperparameters(req: TrainRequest) -> None:
    """The request's settings in range, or ValidationError naming the first that is not."""
    checks = [
        (req.epochs >= 1, f"epochs must be 1 or more (got {req.epochs})"),
        (req.lr is None or req.lr > 0, f"lr must be above 0 (got {req.lr})"),
        (1 <= req.lora_rank <= MAX_LORA_RANK, f"lora_rank must be between 1 and {MAX_LORA_RANK} (got {req.lora_rank})"),
        (not req.qlora or req.lora, "qlora trains a LoRA adapter over a 4-bit base: set lora too"),
        (not req.qlora or req.device != "cpu", "qlora loads the base 4-bit on a CUDA GPU; device cpu was asked for"),
        (req.batch_size >= 1, f"batch_size must be 1 or more (got {req.batch_size})"),
        (req.block_size is None or req.block_size >= 2, f"block_size must be 2 or more (got {req.block_size})"),
        (0 <= req.eval_fraction < 1, f"eval_fraction must be in [0, 1) (got {req.eval_fraction})"),
        (req.max_steps is None or req.max_steps >= 1, f"max_steps must be 1 or more (got {req.max_steps})"),
        (req.dropout is None or 0 <= req.dropout < 1, f"dropout must be in [0, 1) (got {req.dropout})"),
        (req.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda (got {req.device!r})"),
        (req.precision in ("auto", "fp32", "bf16", "fp16"),
         f"precision must be auto, fp32, bf16 or fp16 (got {req.precision!r})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValidationError(message)
