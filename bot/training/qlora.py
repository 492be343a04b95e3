"""QLoRA: a LoRA adapter trained over a base loaded 4-bit (NF4 with double quantization, bitsandbytes) on a CUDA GPU,
for a base that does not fit the card in 16 or 32 bits (a 1B base in 4 bits is about 0.7 GB of weights).

Only the frozen base is quantized: the adapter's weights train in fp32 (peft's own choice), computed in bf16
(fp16 on a GPU without it), and are saved as an ordinary LoRA adapter naming the base, so the persona loads and is
served over the full-precision base like any other (bot/generation/bases.py). The 4-bit base exists only while
training. Needs the `qlora` extra (bitsandbytes and accelerate, which transformers' 4-bit loading uses) and a GPU:
bitsandbytes' 4-bit training is CUDA's, so the CPU is refused with a plain reason rather than left to fail deep in
a kernel.
"""

from __future__ import annotations

import importlib.util

import torch

from ..errors import ConfigError

INSTALL = "pip install 'mimicbot[qlora]'"
QUANT_TYPE = "nf4"


def check(device: torch.device) -> None:
    """ConfigError unless a 4-bit base can be trained here: a CUDA device, bitsandbytes and accelerate installed."""
    if device.type != "cuda":
        raise ConfigError("QLoRA (--qlora) loads the base 4-bit with bitsandbytes, which trains on a CUDA GPU only, "
                          "and torch sees none here; train with --lora (a full-precision base) on this machine")
    missing = [name for name in ("bitsandbytes", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"QLoRA (--qlora) needs {' and '.join(missing)}, which is not installed: {INSTALL}")


def compute_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_kwargs(device: torch.device) -> dict:
    """What `from_pretrained` takes to load the base 4-bit on `device`."""
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=QUANT_TYPE, bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=compute_dtype())
    return {"quantization_config": config, "device_map": {"": device.index or 0}, "dtype": compute_dtype()}


def prepare(model):
    """The 4-bit model made ready for an adapter: norms in fp32, inputs requiring grad, gradient checkpointing
    (peft's `prepare_model_for_kbit_training`, what the QLoRA recipe does)."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)


def record() -> dict:
    """How the base was quantized, for training.json."""
    import bitsandbytes

    return {"bits": 4, "type": QUANT_TYPE, "double_quant": True, "compute_dtype": str(compute_dtype()).split(".")[-1],
            "library": f"bitsandbytes {bitsandbytes.__version__}", "base_during_training_only": True}


__all__ = ["INSTALL", "check", "load_kwargs", "prepare", "record"]
