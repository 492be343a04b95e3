"""The model card (README.md) against the structure of huggingtweets' real cards, and its pictures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from bot.errors import MimicbotError
from bot.training.card import render_card, write_card
from bot.training.pictures import loss_png, nice_ticks, predictions_png, smoothed, wrap_words

# What the two real huggingtweets cards (model-card-example-bot.md and -cyborg.md) share; checked against
# the cards themselves when the reference folder is present.
REFERENCE = Path("/work/shared/reference")
SEED_FRONT_MATTER_KEYS = ["language", "thumbnail", "tags", "widget"]
SEED_HEADINGS = ["How does it work?", "Training data", "Training procedure", "How to use", "Limitations and bias",
                 "About"]
SEED_TABLE_ROWS = ["Tweets downloaded", "Retweets", "Short tweets", "Tweets kept"]
ROBOT = "\U0001f916"


def account(handle: str, name: str, downloaded: int, retweets: int, short: int, kept: int, **extra) -> dict:
    return {"handle": handle, "display_name": name, "network": "x", "avatar_url": None,
            "stats": {"downloaded": downloaded, "retweets": retweets, "short": short, "kept": kept, "chars": 9000},
            "train_posts": kept - kept // 10, "held_out_posts": kept // 10, **extra}


def info(accounts: list[dict], model_id: str) -> dict:
    """A training.json as the trainer writes it."""
    return {
        "model_id": model_id, "display_name": " & ".join(a["display_name"] for a in accounts),
        "kind": "BOT" if len(accounts) == 1 else "CYBORG", "accounts": accounts,
        "base_model": "gpt2", "base_model_kind": "hub",
        "hyperparameters": {"epochs": 4, "lr": 1.372e-4, "schedule": "cosine, no warm-up", "optimizer": "AdamW (fused)",
                            "batch_size": 1, "block_size": 1024, "seed": 1234, "eval_fraction": 0.1},
        "device": "cuda:0", "precision": "bf16", "steps": 1200, "trained_tokens": 1_228_800, "tokens_per_s": 9876.5,
        "eval": {"held_out_posts": 100, "loss_before": 4.5, "loss_after": 3.25, "perplexity_before": 90.02,
                 "perplexity_after": 25.79},
        "versions": {"torch": "2.13.0", "transformers": "5.23.0", "python": "3.11.7"},
        "created_at": "2026-01-02T03:04:05+00:00", "duration_s": 321.0,
        "generation": {"prompt": "My dream is", "samples": ["My dream is to test"]},
    }


ONE = info([account("itspublu", "NFT Chief of Staff", 1768, 481, 282, 1005)], "itspublu")
THREE = info([account("coffee__burger", "Coffee Burger", 2471, 525, 337, 1609,
                      avatar_url="https://pbs.twimg.com/profile_images/1/a_400x400.jpg"),
              account("berniesanders", "Bernie Sanders", 3249, 296, 5, 2948),
              account("sensanders", "Bernie Sanders", 3250, 429, 10, 2811)],
             "berniesanders-coffee__burger-sensanders")


def front_matter(card: str) -> tuple[list[str], str]:
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, "no front matter"
    block = match.group(1)
    return re.findall(r"^(\w+):", block, re.M), block


def headings(card: str) -> list[str]:
    return re.findall(r"^## (.+)$", card, re.M)


def table(card: str, first_cell: str) -> list[list[str]]:
    """The Markdown table whose header starts with `first_cell`, as rows of cells."""
    lines = card.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="the reference cards are not on this machine")
def test_seed_structure_matches_the_real_cards():
    for name in ("model-card-example-bot.md", "model-card-example-cyborg.md"):
        seed = (REFERENCE / name).read_text(encoding="utf-8")
        assert front_matter(seed)[0] == SEED_FRONT_MATTER_KEYS
        assert headings(seed) == SEED_HEADINGS
        assert [row[0] for row in table(seed, "Data")[2:]] == SEED_TABLE_ROWS


@pytest.mark.parametrize("data", [ONE, THREE], ids=["bot", "cyborg"])
def test_card_has_the_seed_cards_structure(data):
    card = render_card(data)
    keys, block = front_matter(card)
    assert keys == SEED_FRONT_MATTER_KEYS
    assert "thumbnail: predictions.png" in block
    assert "- mimicbot\n- huggingtweets" in block and '- text: "My dream is"' in block
    assert headings(card) == SEED_HEADINGS

    rows = table(card, "Data")
    assert rows[0] == ["Data", *[a["display_name"] for a in data["accounts"]]]
    assert rows[1] == ["---"] * (1 + len(data["accounts"]))
    assert [r[0] for r in rows[2:]] == SEED_TABLE_ROWS
    for row, key in zip(rows[2:], ("downloaded", "retweets", "short", "kept")):
        assert row[1:] == [str(a["stats"][key]) for a in data["accounts"]]

    assert f"model='{data['model_id']}'" in card  # the pipeline snippet names this model
    assert "| before training | 4.500 | 90.02 |" in card and "| after training | 3.250 | 25.79 |" in card
    assert "| Seed | 1234 |" in card and "| Batch | 1 × 1024 tokens |" in card
    assert "[GPT-2](https://huggingface.co/gpt2)" in card


def test_one_account_is_a_bot_several_a_cyborg():
    one, three = render_card(ONE), render_card(THREE)
    assert f"{ROBOT} AI BOT {ROBOT}" in one and "CYBORG" not in one
    assert ">NFT Chief of Staff</div>" in one and ">@itspublu</div>" in one
    assert "[@itspublu's posts](https://x.com/itspublu)" in one
    assert f"{ROBOT} AI CYBORG {ROBOT}" in three and "AI BOT" not in three
    assert ">Coffee Burger &amp; Bernie Sanders &amp; Bernie Sanders</div>" in three
    assert ">@berniesanders-coffee__burger-sensanders</div>" in three
    # one avatar per account: the picture when there is a URL, initials otherwise
    assert three.count("border-radius: 50%") == 3
    assert "url(&#39;https://pbs.twimg.com/profile_images/1/a_400x400.jpg&#39;)" in three
    assert ">BS</div>" in three and ">NC</div>" in one


def test_card_file_is_utf8_with_the_real_robot(tmp_path):
    (tmp_path / "training.json").write_text(json.dumps(THREE), encoding="utf-8")
    path = write_card(tmp_path)
    raw = path.read_bytes()
    assert ROBOT.encode("utf-8") == b"\xf0\x9f\xa4\x96" and raw.count(ROBOT.encode("utf-8")) == 2
    assert "ðŸ¤–".encode("utf-8") not in raw  # not the mis-decoded form of the old cards
    assert raw.decode("utf-8") == render_card(THREE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "training.json"]  # no temporary file left


def test_names_cannot_break_the_table_or_the_html():
    data = info([account("a", "Pipe | Name", 10, 1, 1, 8), account("b", "<script>x</script>", 10, 1, 1, 8)], "a-b")
    card = render_card(data)
    rows = table(card, "Data")
    assert all(len(row) == 3 for row in rows)
    assert rows[0][1] == r"Pipe \| Name"
    assert "<script>" not in card.split("## How does it work?")[0]
    assert "&lt;script&gt;" in card


def test_write_card_without_a_training_record(tmp_path):
    with pytest.raises(MimicbotError, match="no training.json"):
        write_card(tmp_path)
    assert not (tmp_path / "README.md").exists()


def test_tiny_base_model_is_described_as_such():
    card = render_card({**ONE, "base_model": "tiny", "base_model_kind": "tiny"})
    assert "tiny GPT-2 built on this machine" in card and "huggingface.co/tiny" not in card
    assert "same limitations and bias as GPT-2" not in card


# -- pictures -------------------------------------------------------------------------------------------


def test_predictions_png_draws_one_card_per_text(tmp_path):
    accounts = THREE["accounts"]
    one = predictions_png(tmp_path / "one.png", accounts, "My dream is", ["My dream is short."])
    long_text = "My dream is " + " ".join(["a long post that wraps over several lines"] * 6)
    three = predictions_png(tmp_path / "three.png", accounts, "My dream is", ["My dream is short."] * 2 + [long_text])
    with Image.open(one) as a, Image.open(three) as b:
        assert a.format == b.format == "PNG"
        assert a.width == b.width == 600
        assert b.height > 3 * a.height  # three cards, one of them several lines taller
        colours = {c for _, c in a.convert("RGB").getcolors(1 << 20)}
    assert len(colours) > 20  # text and avatars were drawn, not a blank image
    assert not list(tmp_path.glob(".*tmp"))


def test_wrapping_keeps_lines_inside_the_width():
    words = [(w, False) for w in ("word " * 40 + "x" * 200).split()]
    lines = wrap_words(words, 300, 17)
    from bot.training.pictures import font

    for line in lines:
        width = sum(font(17, b).getlength(w) for w, b in line) + font(17).getlength(" ") * (len(line) - 1)
        assert width <= 300
    assert "".join(w for line in lines for w, _ in line).endswith("x" * 10)  # the long word was cut, not lost
    assert sum(len(w) for line in lines for w, _ in line) == len("word") * 40 + 200


def test_loss_png_and_its_helpers(tmp_path):
    with Image.open(loss_png(tmp_path / "loss.png", [5.0 - i * 0.01 for i in range(300)])) as img:
        assert img.size == (800, 400)
    with Image.open(loss_png(tmp_path / "empty.png", [])) as img:
        assert img.size == (800, 400)
    assert nice_ticks(0.0, 10.0) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert nice_ticks(1.3, 1.9) == pytest.approx([1.4, 1.6, 1.8])
    assert smoothed([2.0, 2.0, 2.0]) == [2.0, 2.0, 2.0]  # bias-corrected: no ramp up from zero
    curve = smoothed([10.0] * 50 + [0.0] * 50)
    assert curve[0] == 10.0 and 0.0 < curve[60] < 10.0 and curve[-1] < curve[60]


def test_the_card_tells_the_truth_about_epochs_sources_and_generation():
    from bot.sources import SOURCES

    one_epoch = render_card({**ONE, "hyperparameters": {**ONE["hyperparameters"], "epochs": 1}})
    assert "1 epoch of shuffled copies" in one_epoch and "1 epochs" not in one_epoch
    assert "4 epochs of shuffled copies" in render_card(ONE)
    works = render_card(ONE).split("## How does it work?")[1].split("## Training data")[0]
    assert all(source in works for source in SOURCES) and "Bluesky" in works and "Mastodon" in works
    # the settings the model carries, in the text and in the pipeline call
    carried = {**ONE, "generation": {**ONE["generation"], "top_p": 0.9, "top_k": 40, "temperature": 0.8,
                                     "max_length": 120, "min_length": 5}}
    card = render_card(carried)
    assert "`top_p` 0.9, `top_k` 40, temperature 0.8, at most 120 and at least 5 tokens" in card
    assert ("top_p=0.9,\n                    top_k=40, temperature=0.8, max_length=120,\n"
            "                    min_length=5)") in card
    # a record without settings (older runs) shows the recipe's
    assert "`top_p` 0.95, `top_k` 50, temperature 1, at most 160 and at least 10 tokens" in render_card(ONE)
