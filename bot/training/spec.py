"""What a training job needs, as plain JSON-able data, so it can cross a process (or a Ray) boundary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class AccountData:
    """One account's side of a training run: who, their kept (cleaned) posts, and the card's statistics."""

    handle: str
    display_name: str
    network: str = "x"
    avatar_url: str | None = None
    texts: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # downloaded, retweets, short, kept, chars


@dataclass
class TrainRequest:
    """Everything the trainer reads. Defaults are the huggingtweets recipe's."""

    model_id: str
    accounts: list[AccountData]
    models_dir: str
    base_model: str = "gpt2"  # a hub id, a local directory, or "tiny" (offline demo/test model)
    epochs: int = 4
    lr: float = 1.372e-4
    block_size: int | None = None  # None: min(1024, the model's context)
    batch_size: int = 1  # blocks per optimizer step
    seed: int | None = None  # None: random, recorded in training.json
    eval_fraction: float = 0.1
    max_steps: int | None = None  # cap for tests and demos
    device: str = "auto"  # auto, cpu, cuda
    precision: str = "auto"  # auto, fp32, bf16, fp16

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
