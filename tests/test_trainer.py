"""The trainer on the tiny offline GPT-2 and the bundled sample accounts: real tokenizer, real training steps,
real files on disk, loaded back with the transformers pipeline."""

from __future__ import annotations

import json
import math
import os
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import torch

from bot.cleaning import EOT, clean_post, joined_chars, stats
from bot.errors import ConfigError, MimicbotError, NotEnoughData, ValidationError
from bot.generation.anticopy import AntiCopyIndex
from bot.sources.files import ArchiveSource
from bot.training.spec import AccountData, TrainRequest, model_id_for
from bot.training.tiny import ensure_tiny_base
from bot.training.trainer import (SMALL_MODEL, balance, block_starts, join_posts, pack, pick_block_size,
                                  pick_threads, split_blocks, split_held_out, train)

SAMPLES = Path(__file__).resolve().parent.parent / "bot" / "samples"
PHASES = ["load", "eval", "train", "eval", "save"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """For the work here outside the trainer (which picks its own threads): tiny models gain nothing from a
    second thread, and two threads stall badly on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_small_model_trains_on_one_thread_a_large_one_on_every_core(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpu = torch.device("cpu")
    small, large = torch.nn.Linear(100, SMALL_MODEL // 200), torch.nn.Linear(1000, SMALL_MODEL // 1000 + 1)
    try:
        assert pick_threads(cpu, small) == 1
        assert pick_threads(cpu, large) == torch.get_num_threads() == (os.cpu_count() or 1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the person's setting wins
        torch.set_num_threads(1)
        assert pick_threads(cpu, large) == 1
    finally:
        torch.set_num_threads(1)


def sample_account(name: str) -> AccountData:
    """One bundled archive, read and cleaned the way the service does it."""
    result = ArchiveSource(SAMPLES / f"{name}.zip").read()
    posts = [clean_post(p.text, p.is_retweet) for p in result.posts]
    return AccountData(handle=result.account.handle, display_name=result.account.display_name,
                       network=result.account.network, texts=[p.text for p in posts if p.kept],
                       stats=stats(posts).as_dict())


@pytest.fixture(scope="module")
def accounts() -> list[AccountData]:
    return [sample_account("ada_bytes"), sample_account("grace_gardens")]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models")
    ensure_tiny_base(path)
    return path


def request(accounts, models_dir, **overrides) -> TrainRequest:
    fields = dict(model_id=model_id_for([a.handle for a in accounts]), accounts=accounts, models_dir=str(models_dir),
                  base_model="tiny", lr=2e-3, seed=7, max_steps=40)
    return TrainRequest(**{**fields, **overrides})


def work_dir(models_dir: Path, name: str) -> Path:
    return models_dir / ".work" / name


@pytest.fixture(scope="module")
def cyborg(accounts, models_dir):
    """One real run on both sample accounts, shared by the tests that read its results."""
    events: list[dict] = []
    info = train(request(accounts, models_dir), work_dir(models_dir, "cyborg"), events.append)
    return info, events


# -- a whole run --------------------------------------------------------------------------------------


def test_held_out_loss_goes_down(cyborg):
    ev = cyborg[0]["eval"]
    assert ev["loss_after"] < ev["loss_before"] - 0.5, ev
    assert ev["perplexity_after"] == pytest.approx(math.exp(ev["loss_after"]), rel=1e-3)
    assert ev["perplexity_after"] < ev["perplexity_before"]


def test_training_json_records_the_run(cyborg, accounts, models_dir):
    info, _ = cyborg
    path = models_dir / "ada_bytes-grace_gardens"
    assert info["path"] == str(path)
    on_disk = json.loads((path / "training.json").read_text(encoding="utf-8"))
    assert on_disk == {k: v for k, v in info.items() if k != "path"}

    assert info["model_id"] == "ada_bytes-grace_gardens"
    assert info["display_name"] == "Ada Bytes & Grace Gardens"
    assert info["kind"] == "CYBORG"
    assert [a["handle"] for a in info["accounts"]] == ["ada_bytes", "grace_gardens"]
    for record, account in zip(info["accounts"], accounts):
        assert record["stats"] == account.stats
        assert record["held_out_posts"] == round(len(account.texts) * 0.1)
        assert record["train_posts"] + record["held_out_posts"] == len(account.texts)
    # balanced: both accounts trained on about as many characters as the larger one
    ada, grace = (a["train_chars"] for a in info["accounts"])
    assert abs(ada - grace) < 300

    hp = info["hyperparameters"]
    assert (hp["seed"], hp["block_size"], hp["batch_size"], hp["epochs"], hp["lr"]) == (7, 256, 1, 4, 2e-3)
    assert info["steps"] == 40
    assert info["trained_tokens"] == 40 * 256
    assert info["device"] == "cpu" and info["precision"] in ("fp32", "bf16")
    assert len(info["losses"]) == 40
    assert info["eval"]["held_out_posts"] == sum(a["held_out_posts"] for a in info["accounts"])
    assert info["tokens_per_s"] > 0 and info["duration_s"] >= info["train_seconds"] > 0
    assert {"torch", "transformers", "python"} <= set(info["versions"]) <= {"torch", "transformers", "python", "peft"}
    assert datetime.fromisoformat(info["created_at"]) <= datetime.fromisoformat(info["finished_at"])


def test_events_phases_and_progress(cyborg):
    _, events = cyborg
    assert [e["phase"] for e in events if e["type"] == "phase"] == PHASES
    progress = [e for e in events if e["type"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == 40
    assert [e["step"] for e in progress] == sorted({e["step"] for e in progress})
    assert all(e["phase"] == "train" and e["tokens_per_s"] > 0 and e["eta_s"] >= 0 for e in progress)
    assert all(math.isfinite(e["loss"]) for e in progress)


def test_model_folder_files(cyborg, accounts, models_dir):
    path = models_dir / "ada_bytes-grace_gardens"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "training.json", "anticopy.json", "loss.png", "predictions.png",
                 "README.md"):
        assert (path / name).is_file(), name
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in [path, *path.iterdir()])  # others may load it
    gen = json.loads((path / "generation_config.json").read_text())
    assert (gen["do_sample"], gen["top_p"], gen["min_length"], gen["max_length"]) == (True, 0.95, 10, 160)
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(path)  # what transformers applies: the recipe's settings, top_k 50
    assert (config.temperature, config.top_k, config.max_new_tokens) == (1.0, 50, None)
    assert gen["prefix"] == EOT and gen["eos_token_id"] == gen["pad_token_id"]
    assert json.loads((path / "config.json").read_text())["prefix"] == EOT

    index = AntiCopyIndex.load(path / "anticopy.json")
    assert index.posts == sum(len(a.texts) for a in accounts)  # held-out posts are in the index too
    assert index.check(accounts[1].texts[-1]) is not None
    samples = cyborg[0]["generation"]["samples"]
    assert samples and all(s.startswith("My dream is") and index.check(s) is None for s in samples)

    card = (path / "README.md").read_text(encoding="utf-8")
    assert "🤖 AI CYBORG 🤖" in card and "| Tweets kept | 319 | 241 |" in card
    assert not list(models_dir.glob(".replaced-*"))


def test_pipeline_loads_and_generates(cyborg, models_dir):
    from transformers import pipeline

    generator = pipeline("text-generation", model=str(models_dir / "ada_bytes-grace_gardens"))
    assert generator.prefix == EOT
    out = generator("My dream is", num_return_sequences=2, max_new_tokens=8)
    assert len(out) == 2
    assert all(o["generated_text"].startswith("My dream is") for o in out)
    assert all(len(o["generated_text"]) > len("My dream is") for o in out)


def test_the_cards_snippet_runs_with_the_settings_the_model_carries(cyborg, models_dir):
    import re

    path = models_dir / "ada_bytes-grace_gardens"
    card = (path / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert "top_k=50" in code and "max_length=160" in code and "min_length=10" in code and "top_p=0.95" in code
    scope: dict = {}
    exec(code.replace("model='ada_bytes-grace_gardens'", f"model={str(path)!r}"), scope)
    assert len(scope["posts"]) == 5 and all(p.startswith("My dream is") and "\n" not in p for p in scope["posts"])
    assert cyborg[0]["generation"]["top_k"] == 50 and cyborg[0]["generation"]["max_length"] == 160


# -- retraining -----------------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def raise_on_progress(event: dict) -> None:
    if event["type"] == "progress":
        raise Boom("the event sink broke mid-training")


def test_retrain_replaces_only_when_complete(accounts, models_dir):
    ada = [accounts[0]]
    first = train(request(ada, models_dir, max_steps=2, seed=1), work_dir(models_dir, "r1"), lambda e: None)
    path = Path(first["path"])
    assert path.name == "ada_bytes" and first["kind"] == "BOT"
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    with pytest.raises(Boom):
        train(request(ada, models_dir, max_steps=3, seed=2), work_dir(models_dir, "r2"), raise_on_progress)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # the old model, untouched

    again = train(request(ada, models_dir, max_steps=2, seed=3, precision="fp32", batch_size=2),
                  work_dir(models_dir, "r3"), lambda e: None)
    assert again["path"] == str(path)
    on_disk = json.loads((path / "training.json").read_text())
    assert on_disk["hyperparameters"]["seed"] == 3 and on_disk["precision"] == "fp32"
    assert on_disk["trained_tokens"] == 2 * 2 * 256
    assert not (models_dir / ".work" / "r3").exists()
    assert not list(models_dir.glob(".replaced-*"))


# -- the embedding frozen on request (issue 14: measured, not the default) ------------------------------------


def test_a_frozen_tied_embedding_stays_as_the_base_had_it_and_everything_else_trains(accounts, models_dir):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(ensure_tiny_base(models_dir))
    assert base.get_output_embeddings().weight is base.get_input_embeddings().weight  # GPT-2's are one tensor
    base_weights = {name: p.detach().clone() for name, p in base.named_parameters()}
    for frozen in (True, False):  # False: the default
        asked = {"freeze_embedding": True} if frozen else {}
        info = train(request(accounts[:1], models_dir, model_id=f"frozen-{frozen}", max_steps=3, precision="fp32",
                             **asked), work_dir(models_dir, f"frozen-{frozen}"), lambda e: None)
        assert info["hyperparameters"].get("frozen_embedding", False) is frozen
        trained = dict(AutoModelForCausalLM.from_pretrained(info["path"]).named_parameters())
        unchanged = {name for name, p in trained.items() if torch.equal(p, base_weights[name])}
        assert unchanged == ({"transformer.wte.weight"} if frozen else set())
        assert info["trainable_parameters"] == sum(p.numel() for p in base.parameters()) - (
            base.get_input_embeddings().weight.numel() if frozen else 0)


# -- shorter blocks in fp32 on the CPU (issue 14) -------------------------------------------------------------


def test_in_fp32_on_the_cpu_a_default_block_of_1024_is_cut_into_four_of_256_a_step():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert split_blocks(1024, None, cpu, "fp32") == (256, 4)
    assert split_blocks(1024, None, cpu, "bf16") == (1024, 1)  # a CPU with native bf16: as before
    assert split_blocks(1024, None, gpu, "fp32") == (1024, 1)
    assert split_blocks(1024, 1024, cpu, "fp32") == (1024, 1)  # a block size asked for is kept
    assert split_blocks(256, None, cpu, "fp32") == (256, 1)  # a short context (the tiny model's) is left alone
    assert split_blocks(1000, None, cpu, "fp32") == (1000, 1)  # a stream shorter than a block: one block


def test_a_split_step_trains_the_same_tokens_in_shorter_blocks(accounts, models_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny = ensure_tiny_base(models_dir)
    long = tmp_path / "tiny-1024"  # the tiny model with GPT-2's context of 1,024 positions
    config = AutoModelForCausalLM.from_pretrained(tiny).config
    config.n_positions = 1024
    AutoModelForCausalLM.from_config(config).save_pretrained(long)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(long)
    for precision, block, per_step in (("fp32", 256, 4), ("bf16", 1024, 1)):
        info = train(request(accounts, models_dir, model_id=f"split-{precision}", base_model=str(long), max_steps=2,
                             precision=precision), work_dir(models_dir, f"split-{precision}"), lambda e: None)
        hp = info["hyperparameters"]
        assert (hp["block_size"], hp.get("blocks_per_step", 1), hp["batch_size"]) == (block, per_step, 1)
        assert info["steps"] == 2 and info["trained_tokens"] == 2 * 1024  # the same tokens a step either way


# -- data building ---------------------------------------------------------------------------------------


def test_balance_repeats_smaller_accounts_to_the_largest():
    big = [f"big post number {i} " + "x" * 80 for i in range(40)]
    small = [f"small {i} " + "y" * 30 for i in range(5)]
    balanced_big, balanced_small = balance([big, small])
    assert balanced_big == big  # the largest account is left as it is
    target = joined_chars(big)
    assert target <= joined_chars(balanced_small) < target + len(small[0]) + len(EOT)
    assert set(balanced_small) == set(small)
    counts = [balanced_small.count(p) for p in small]
    assert max(counts) - min(counts) <= 1  # repeated evenly: whole copies, then from the start again
    assert balance([small]) == [small]


def test_pack_makes_full_blocks_without_padding():
    ids = list(range(1000))
    blocks = pack(ids, 256)
    assert blocks.shape == (4, 256)
    assert blocks[:3].flatten().tolist() == ids[:768]
    assert blocks[3].tolist() == ids[-256:]  # the tail: a full block ending at the text's end
    assert set(blocks.flatten().tolist()) == set(ids)
    assert pack(list(range(512)), 256).flatten().tolist() == list(range(512))  # exact fit: no overlap
    assert block_starts(100, 256) == []
    assert pick_block_size(None, 1024, 300) == 300  # never more than the text holds
    assert pick_block_size(None, 256, 10_000) == 256 and pick_block_size(None, 2048, 10_000) == 1024
    with pytest.raises(ValidationError, match="longer than the base model's context"):
        pick_block_size(512, 256, 10_000)


def test_training_text_is_posts_between_end_of_text_tokens():
    assert join_posts([[5, 6], [7], [8, 9]], 0) == [0, 5, 6, 0, 7, 0, 8, 9, 0]


def test_held_out_split_is_seeded_and_keeps_training_posts():
    posts = [f"post {i}" for i in range(57)]
    train_a, held_a = split_held_out(posts, 0.1, random.Random(5))
    train_b, held_b = split_held_out(posts, 0.1, random.Random(5))
    assert (train_a, held_a) == (train_b, held_b)
    assert len(held_a) == 6 and sorted(train_a + held_a) == sorted(posts)
    assert split_held_out(posts, 0.1, random.Random(6))[1] != held_a
    assert split_held_out(posts[:3], 0.1, random.Random(1))[1] != []  # at least one post
    assert split_held_out(posts[:1], 0.1, random.Random(1)) == (posts[:1], [])  # never all of them
    assert split_held_out(posts, 0.0, random.Random(1)) == (posts, [])


# -- refusals --------------------------------------------------------------------------------------------


def test_unknown_base_model_is_a_clear_error(accounts, models_dir, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the library read the variable at import
    published = sorted(p.name for p in models_dir.iterdir())
    for base in ("/nonexistent/model-folder", "no-such-org/no-such-model"):
        with pytest.raises(ConfigError, match=f"cannot load base model '{base}'"):
            train(request(accounts, models_dir, base_model=base), work_dir(models_dir, "bad"), lambda e: None)
    assert sorted(p.name for p in models_dir.iterdir()) == published


def test_bad_requests_are_refused(accounts, models_dir):
    cases = [
        (dict(accounts=[AccountData("nobody", "Nobody", texts=[])]), NotEnoughData, "@nobody has no kept posts"),
        (dict(model_id="../escape"), ValidationError, "cannot be a folder name"),
        (dict(block_size=4096), ValidationError, "longer than the base model's context"),
        (dict(precision="fp8"), ValidationError, "precision must be"),
        (dict(lr=0), ValidationError, "lr must be above 0"),
    ]
    for overrides, error, message in cases:
        req = request(overrides.pop("accounts", accounts), models_dir, **overrides)
        with pytest.raises(error, match=message):
            train(req, work_dir(models_dir, "refused"), lambda e: None)
    assert issubclass(ConfigError, MimicbotError)


# -- the tiny base model -------------------------------------------------------------------------------


def test_tiny_base_is_deterministic_and_cached(models_dir, tmp_path):
    first = ensure_tiny_base(models_dir)
    assert ensure_tiny_base(models_dir) == first == models_dir / "_base" / "tiny"
    other = ensure_tiny_base(tmp_path)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (first / name).read_bytes() == (other / name).read_bytes(), name

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(first)
    model = AutoModelForCausalLM.from_pretrained(first)
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.pad_token == EOT
    assert model.config.n_positions == 256 and model.config.vocab_size == len(tokenizer)
    ids = tokenizer("My dream is a compiler")["input_ids"]
    assert tokenizer.decode(ids) == "My dream is a compiler"
    with torch.no_grad():
        assert model(torch.tensor([ids])).logits.shape == (1, len(ids), len(tokenizer))


def test_tiny_base_survives_a_race(tmp_path):
    """Two builders at once into the same folder: both get the model and one copy remains."""
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(ensure_tiny_base, [tmp_path, tmp_path]))
    assert paths == [tmp_path / "_base" / "tiny"] * 2
    assert sorted(p.name for p in (tmp_path / "_base").iterdir()) == ["tiny"]  # the loser's copy is gone
    assert (tmp_path / "_base" / "tiny" / "model.safetensors").is_file()


def test_a_known_parent_is_read_before_its_reply_outside_the_loss():
    from bot.generation.framing import IGNORE
    from bot.training.trainer import join_units

    eot = 0
    ids, labels = join_units([[5, 6], [7, 8, 9]], [[], [3, 4]], eot)
    assert ids == [0, 5, 6, 0, 3, 4, 0, 7, 8, 9, 0]
    assert labels == [0, 5, 6, 0, IGNORE, IGNORE, IGNORE, 7, 8, 9, 0]
    # without parents the stream and its labels are the recipe's text
    plain_ids, plain_labels = join_units([[5, 6], [7, 8, 9]], [[], []], eot)
    assert plain_ids == plain_labels == join_posts([[5, 6], [7, 8, 9]], eot)
