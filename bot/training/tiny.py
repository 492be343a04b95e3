"""Tiny models built on this machine, for demos and tests only: a GPT-2 (`base_model="tiny"`), and a Llama and
a Qwen2 (`tiny-llama`, `tiny-qwen2`) with tokenizers of their own kind.

No pretrained weights can be downloaded here, so the offline base model is made from scratch: a byte-level
BPE tokenizer trained on the bundled sample archives (bot/samples/*.zip, cleaned as the recipe cleans) and
a two-layer GPT-2 with random weights from a fixed seed. Same inputs, same files. It knows no English
beyond the samples' words; fine-tuning it shows the pipeline working, not a good writer.

The Llama and Qwen2 ones stand for the modern bases (SmolLM2, Llama 3, Qwen2.5): their tokenizers end a sequence
with a token that is not `<|endoftext|>` and have a beginning token; the Llama one adds its beginning token by
itself (as Llama's do), the Qwen2 one does not. Both use grouped-query attention and rotary positions, and name
their context `max_position_embeddings`.

Each is built once per models directory, at `<models_dir>/_base/<name>/`, in a temporary folder that is then
renamed into place: a reader never sees half a model, and when two processes build it at the same time
one rename wins and the other process uses the winner's copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..cleaning import EOT, clean_text
from ..sources.files import ArchiveSource

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
VOCAB_SIZE = 2048  # asked for; the samples' small vocabulary stops BPE at about 950 (every word one token)
N_POSITIONS = 256
N_EMBD = 128
N_LAYER = 2
N_HEAD = 2
SEED = 0
# name -> (architecture, beginning token, end token, whether the tokenizer adds the beginning token itself)
TINY_BASES = {
    "tiny": ("gpt2", EOT, EOT, False),
    "tiny-llama": ("llama", "<|begin_of_text|>", "<|end_of_text|>", True),
    "tiny-qwen2": ("qwen2", "<|im_start|>", "<|im_end|>", False),
}


def tiny_dir(models_dir: Path, name: str = "tiny") -> Path:
    return Path(models_dir) / "_base" / name


def ensure_tiny_base(models_dir: Path, name: str = "tiny") -> Path:
    """The tiny base model's folder, built on first use. Loads with `from_pretrained(folder)`."""
    if name not in TINY_BASES:
        raise ValueError(f"no tiny base {name!r}; there are {', '.join(TINY_BASES)}")
    final = tiny_dir(models_dir, name)
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        build_tiny(tmp, name)
        make_readable(tmp)
        os.rename(tmp, final)
    except OSError:
        if not (final / "config.json").exists():  # not a lost race: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def make_readable(folder: Path) -> None:
    """Let every user read a model folder: mkdtemp makes it private, and transformers writes its weights 0600,
    but a model trained by one process (or user) is loaded by another."""
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        if path.is_file():
            os.chmod(path, 0o644)


def sample_texts() -> list[str]:
    """Every bundled sample post, cleaned (retweets and short posts too: more text for the tokenizer)."""
    texts = []
    for archive in sorted(SAMPLES.glob("*.zip")):
        texts += [clean_text(p.text) for p in ArchiveSource(archive).read().posts]
    return [t for t in texts if t]


def build_tiny(out: Path, name: str = "tiny") -> None:
    """Write the tokenizer and the randomly initialised model into `out`."""
    if name != "tiny":
        return build_tiny_modern(out, name)
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sample_texts(), vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[EOT],
                            show_progress=False)
    with tempfile.TemporaryDirectory() as files:
        bpe.save_model(files)  # vocab.json + merges.txt, the GPT-2 tokenizer's own format
        tokenizer = GPT2TokenizerFast.from_pretrained(files, model_max_length=N_POSITIONS)
    tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has no padding token; the recipe's choice
    eot = tokenizer.convert_tokens_to_ids(EOT)

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=N_POSITIONS, n_embd=N_EMBD, n_layer=N_LAYER,
                        n_head=N_HEAD, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(SEED)
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = eot
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_tiny_modern(out: Path, name: str) -> None:
    """A tiny Llama or Qwen2: a byte-level BPE tokenizer with its own beginning and end tokens, and a two-layer
    model with grouped-query attention (4 query heads, 2 key/value heads), random weights from a fixed seed."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import ByteLevel, Sequence, TemplateProcessing
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    arch, bos, eos, adds_bos = TINY_BASES[name]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sample_texts(), vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[bos, eos],
                            show_progress=False)
    if adds_bos:
        bos_id = bpe.token_to_id(bos)
        bpe.post_processor = Sequence([ByteLevel(trim_offsets=False),
                                       TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, bos_id)])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=bos, eos_token=eos, pad_token=eos,
                                        model_max_length=N_POSITIONS, clean_up_tokenization_spaces=False)
    sizes = dict(vocab_size=len(tokenizer), hidden_size=N_EMBD, intermediate_size=2 * N_EMBD, num_hidden_layers=N_LAYER,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=N_POSITIONS,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                 pad_token_id=tokenizer.eos_token_id)
    config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    config = config_cls(**sizes, tie_word_embeddings=arch == "qwen2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_cls(config)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
