"""The model card, README.md: the huggingtweets card's structure, filled from the run's training.json.

Same front matter keys (language, thumbnail, tags, widget), the same header (avatars, then "🤖 AI BOT 🤖" for
one account or "🤖 AI CYBORG 🤖" for several, over the display names and "@model_id"), and the same sections
in the same order: How does it work?, Training data (the per-account table), Training procedure, How to use,
Limitations and bias, About. Where huggingtweets linked to W&B runs, this card states the numbers itself.

    render_card(json.loads((model_dir / "training.json").read_text()))  # -> the README text
    write_card(model_dir)                                               # -> model_dir / "README.md"
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..cleaning import DEFAULT_PROMPT, EOT, STATS_ROWS
from ..atomic import write_atomic
from ..errors import MimicbotError
from ..modelfolder import CARD_FILE, LOSS_FILE, PREDICTIONS_FILE, TRAINING_FILE
from ..sources import SOURCES
from .pictures import avatar_colour, initials

HUGGINGTWEETS = "https://github.com/borisdayma/huggingtweets"
GPT2_LIMITS = "https://huggingface.co/gpt2#limitations-and-bias"


PROFILE_URLS = {"x": "https://x.com/{}", "bsky": "https://bsky.app/profile/{}"}


def render_card(info: dict) -> str:
    """The README.md text for a model, from its training.json dict."""
    parts = [
        front_matter(info),
        header(info),
        "I was made with mimicbot, which grows out of [huggingtweets](" + HUGGINGTWEETS + ").",
        how_it_works(info),
        training_data(info),
        training_procedure(info),
        how_to_use(info),
        limitations(info),
        about(),
    ]
    return "\n\n".join(p.strip("\n") for p in parts) + "\n"


def write_card(model_dir: Path) -> Path:
    """Render the card of the model in `model_dir` from its training.json; written atomically."""
    model_dir = Path(model_dir)
    try:
        info = json.loads((model_dir / TRAINING_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MimicbotError(f"no {TRAINING_FILE} in {model_dir}: the card is written from a mimicbot training run") from None
    except (OSError, ValueError) as e:
        raise MimicbotError(f"cannot read {model_dir / TRAINING_FILE}: {e}") from None
    return write_atomic(model_dir / CARD_FILE, render_card(info))


# -- pieces, top to bottom ------------------------------------------------------------------------


def _accounts(info: dict) -> list[dict]:
    return [a for a in info.get("accounts") or [] if isinstance(a, dict)]


def _name(account: dict) -> str:
    return account.get("display_name") or account.get("handle") or "?"


def _display_name(info: dict) -> str:
    return info.get("display_name") or " & ".join(_name(a) for a in _accounts(info)) or info.get("model_id", "?")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|")


ARCHITECTURES = {"gpt2": "GPT-2", "llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral", "phi": "Phi",
                 "phi3": "Phi-3", "gemma": "Gemma", "gemma2": "Gemma 2"}


def _lora(info: dict) -> bool:
    return info.get("adapter") == "lora"


def _arch(info: dict) -> str:
    """The base's architecture as people name it (GPT-2 for records written before it was recorded)."""
    kind = info.get("architecture") or "gpt2"
    return ARCHITECTURES.get(kind, kind)


def _end(info: dict) -> str:
    """The token that ends each post (the recipe's `<|endoftext|>` for GPT-2)."""
    return (info.get("framing") or {}).get("end") or EOT


def _start(info: dict) -> str:
    """What the model reads before each post: the beginning token, or (GPT-2) the end token."""
    return (info.get("framing") or {}).get("start") or _end(info)


def front_matter(info: dict) -> str:
    prompt = (info.get("generation") or {}).get("prompt") or DEFAULT_PROMPT
    lines = ["---", "language: en", f"thumbnail: {info.get('thumbnail') or PREDICTIONS_FILE}"]
    if _lora(info):  # an adapter names its base, which the hub links to (a local path means nothing there)
        if info.get("base_model_kind") == "hub":
            lines.append(f"base_model: {info.get('base_model')}")
        lines.append("library_name: peft")
    lines += ["tags:", "- mimicbot", "- huggingtweets", *(["- lora", "- peft"] if _lora(info) else []),
              "widget:", f"- text: {json.dumps(prompt, ensure_ascii=False)}", "---"]
    return "\n".join(lines)


def _avatar_div(account: dict) -> str:
    style = ("display:inherit; margin-left: 4px; margin-right: 4px; width: 92px; height:92px; "
             "border-radius: 50%; background-size: cover;")
    url = account.get("avatar_url")
    if url:
        return (f'        <div\n            style="{style} background-image: url(&#39;{html.escape(url)}&#39;)">\n'
                "        </div>")
    colour = "#%02x%02x%02x" % avatar_colour(account.get("handle") or _name(account))
    return (f'        <div\n            style="{style} background-color: {colour}; color: white; font-size: 36px; '
            f'font-weight: 800; align-items: center; justify-content: center">'
            f"{html.escape(initials(_name(account)))}</div>")


def header(info: dict) -> str:
    accounts = _accounts(info)
    several = len(accounts) > 1 or str(info.get("kind", "")).upper() == "CYBORG"
    kind = "🤖 AI CYBORG 🤖" if several else "🤖 AI BOT 🤖"
    avatars = "\n".join(_avatar_div(a) for a in accounts)
    return f"""<div class="inline-flex flex-col" style="line-height: 1.5;">
    <div class="flex">
{avatars}
    </div>
    <div style="text-align: center; margin-top: 3px; font-size: 16px; font-weight: 800">{kind}</div>
    <div style="text-align: center; font-size: 16px; font-weight: 800">{html.escape(_display_name(info))}</div>
    <div style="text-align: center; font-size: 14px;">@{html.escape(info.get("model_id", "?"))}</div>
</div>"""


def _or_list(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def generation_settings(info: dict) -> dict:
    """The sampling settings the model carries (training.json's record of its generation_config.json)."""
    from ..generation import DEFAULTS

    gen = info.get("generation") or {}
    return {k: gen.get(k, v) for k, v in DEFAULTS.items()}


def _settings_text(settings: dict, start: str = EOT) -> str:
    return (f"`top_p` {settings['top_p']:g}, `top_k` {settings['top_k']}, temperature {settings['temperature']:g}, "
            f"at most {settings['max_length']} and at least {settings['min_length']} tokens counting `{start}` and the "
            "start text")


def how_it_works(info: dict) -> str:
    return f"""## How does it work?

The model follows the huggingtweets pipeline:

1. **Collect** the account's posts from {_or_list(SOURCES)}.
2. **Clean** them exactly as huggingtweets did: retweets are dropped, `&amp;`, `&lt;` and `&gt;` unescaped once,
   `http:`/`https:` links removed, whitespace folded, posts of fewer than three plain words dropped.
   Mentions, hashtags and emoji stay.
3. **Fine-tune** {_arch(info)} on the kept posts, {_framed(info)}.{_lora_step(info)}
4. **Generate**: the prompt is `{_start(info)}` followed by the start text, sampled with
   {_settings_text(generation_settings(info), _start(info))};
   each sample ends at its first newline or `{_end(info)}`. A sample that does not end within that budget, or that
   copies a training post, is refused."""


def _framed(info: dict) -> str:
    if _start(info) == _end(info):
        return f"each one ended by `{_end(info)}`"
    return f"each one begun by `{_start(info)}` and ended by `{_end(info)}`"


def _lora_step(info: dict) -> str:
    if not _lora(info):
        return ""
    rank = (info.get("hyperparameters") or {}).get("lora_rank", "?")
    return (f" The base's weights stay frozen: a LoRA adapter of rank {rank} on every linear layer is trained "
            "instead, and this repository holds only the adapter.")


def _profile(account: dict) -> str:
    if account.get("network") == "discord":  # a member's messages in one server: their name there, never an id
        return f"{_name(account)}'s messages in a Discord server (learned with their consent)"
    handle = account.get("handle", "?")
    url = PROFILE_URLS.get(account.get("network", "x"))
    return f"[@{handle}'s posts]({url.format(handle)})" if url else f"@{handle}'s posts"


def training_data(info: dict) -> str:
    accounts = _accounts(info)
    if len(accounts) == 1:
        intro = f"The model was trained on {_profile(accounts[0])}."
    else:
        intro = f"The model was trained on posts from {_display_name(info)}."
    table = ["| Data | " + " | ".join(_cell(_name(a)) for a in accounts) + " |",
             "| --- |" + " --- |" * len(accounts)]
    for label, key in STATS_ROWS:
        table.append(f"| {label} | " + " | ".join(f"{(a.get('stats') or {}).get(key, 0)}" for a in accounts) + " |")
    notes = []
    held = [a.get("held_out_posts") for a in accounts]
    if all(isinstance(n, int) for n in held) and any(held):
        fraction = (info.get("hyperparameters") or {}).get("eval_fraction", 0.1)
        notes.append(f"Of the kept posts, {_join_counts(held, accounts)} ({fraction:.0%} of each account) were held "
                     "out to measure the model and not trained on.")
    pairs = [a.get("replies_with_parent") or 0 for a in accounts]
    if any(pairs):
        notes.append(f"{_join_counts(pairs, accounts)} of the trained posts are replies whose parent message was known: "
                     "each was trained after its parent, which the model reads but is not trained to write, so that "
                     "it learns to answer what it reads.")
    if len(accounts) > 1:
        notes.append("Each account's posts were repeated until it had as many characters as the largest one, so "
                     "that no one person drowns out the others.")
    return "## Training data\n\n" + intro + "\n\n" + "\n".join(table) + ("\n\n" + " ".join(notes) if notes else "")


def _join_counts(counts: list[int], accounts: list[dict]) -> str:
    if len(accounts) == 1:
        return f"{counts[0]:,}"
    return ", ".join(f"{n:,} of @{a.get('handle')}" for n, a in zip(counts, accounts))


def _base_model(info: dict) -> str:
    base = str(info.get("base_model") or "gpt2")
    kind = info.get("base_model_kind") or ("tiny" if base == "tiny" else "hub")
    how = "which a LoRA adapter is trained over, on" if _lora(info) else "which is fine-tuned on"
    if kind == "tiny":
        return (f"a tiny {_arch(info)} built on this machine from the bundled sample posts (two layers, random "
                f"initialisation: a demo and test model, not a pre-trained one), {how}")
    if kind == "local":
        return f"the {_arch(info)} model in the local folder `{Path(base).name}`, {how}"
    return f"a pre-trained [{_arch(info)}](https://huggingface.co/{base}) (`{base}`), {how}"


def _threads(info: dict) -> str:
    n = info.get("cpu_threads")
    return f" ({n} thread{'s' if n != 1 else ''})" if str(info.get("device")) == "cpu" and n else ""


def _num(value, fmt: str = "{:,.2f}") -> str:
    return "?" if value is None else fmt.format(value)


def training_procedure(info: dict) -> str:
    hp = info.get("hyperparameters") or {}
    ev = info.get("eval") or {}
    versions = info.get("versions") or {}
    rows = [
        ("Epochs", hp.get("epochs")),
        ("Learning rate", hp.get("lr")),
        ("Schedule", hp.get("schedule", "cosine, no warm-up")),
        ("Optimizer", hp.get("optimizer", "AdamW")),
        ("Batch", f"{hp.get('batch_size')} × {hp.get('block_size')} tokens"),
        ("Steps", _num(info.get("steps"), "{:,}")),
        ("Tokens trained", _num(info.get("trained_tokens"), "{:,}")),
        ("Seed", hp.get("seed")),
        ("Device, precision", f"{info.get('device', '?')}{_threads(info)}, {info.get('precision', '?')}"),
    ]
    hp_table = "| Hyperparameter | Value |\n| --- | --- |\n" + "\n".join(f"| {k} | {_cell(v)} |" for k, v in rows)
    ev_table = ("| Held-out posts | Loss | Perplexity |\n| --- | --- | --- |\n"
                f"| before training | {_num(ev.get('loss_before'), '{:.3f}')} | {_num(ev.get('perplexity_before'))} |\n"
                f"| after training | {_num(ev.get('loss_after'), '{:.3f}')} | {_num(ev.get('perplexity_after'))} |")
    speed = (f"Training took {_num(info.get('duration_s'), '{:,.0f}')} s "
             f"({_num(info.get('tokens_per_s'), '{:,.0f}')} tokens/s) with torch {versions.get('torch', '?')} and "
             f"transformers {versions.get('transformers', '?')}, finished {info.get('created_at', '?')}.")
    return f"""## Training procedure

The model is based on {_base_model(info)} @{info.get("model_id", "?")}'s posts, following the huggingtweets
recipe: the posts joined by `{_end(info)}`, cut into blocks of {hp.get("block_size", "?")} tokens (posts run across
block edges), {_epochs(hp.get("epochs"))} of shuffled copies, AdamW with a cosine schedule and no warm-up.

{hp_table}

The loss on the held-out posts, measured before and after fine-tuning:

{ev_table}

![Training loss]({LOSS_FILE})

{speed}"""


def _epochs(n) -> str:
    return f"{n} epoch" if n == 1 else f"{n if n is not None else '?'} epochs"


def pipeline_snippet(info: dict) -> str:
    """The card's Python: the recipe's call, with the settings the model carries spelled out, and each sample cut
    at its first newline as the recipe cut it."""
    s = generation_settings(info)
    prefix = (info.get("generation") or {}).get("prefix")
    extra = f", prefix={prefix!r}" if _lora(info) and prefix else ""  # an adapter has no config.json to carry it
    return f"""from transformers import pipeline
generator = pipeline('text-generation',
                     model='{info.get("model_id", "?")}')
samples = generator("My dream is", num_return_sequences=5, do_sample=True, top_p={s['top_p']!r},
                    top_k={s['top_k']!r}, temperature={s['temperature']!r}, max_length={s['max_length']!r},
                    min_length={s['min_length']!r}{extra})
posts = [s["generated_text"].split("\\n")[0].strip() for s in samples]"""


def how_to_use(info: dict) -> str:
    if _lora(info):
        return _how_to_use_adapter(info)
    return f"""## How to use

You can use this model directly with a pipeline for text generation (run it in the models folder, or give
the model's folder or the hub repository you pushed it to as `model`):

```python
{pipeline_snippet(info)}
```

The model's `generation_config.json` holds these settings ({_settings_text(generation_settings(info))},
sampling on) and the `{_start(info)}` prefix that the pipeline puts before the prompt, so `generator("My dream is")`
alone samples the same way (the pipeline counts its `{_start(info)}` prefix on top of `max_length` and `min_length`:
one token more than mimicbot and the recipe allow). mimicbot also stops each sample at its first newline and refuses one
that reaches the budget without ending."""


def _how_to_use_adapter(info: dict) -> str:
    base = info.get("base_model_source") or info.get("base_model")
    return f"""## How to use

This is a LoRA adapter over `{base}`: with `peft` installed (`pip install peft`), transformers loads the base and
the adapter together, so a pipeline for text generation takes the adapter's folder (or the hub repository you
pushed it to) as `model`:

```python
{pipeline_snippet(info)}
```

The adapter's `generation_config.json` holds these settings ({_settings_text(generation_settings(info), _start(info))},
sampling on). mimicbot also stops each sample at its first newline and refuses one that reaches the budget without
ending."""


def limitations(info: dict) -> str:
    if info.get("base_model_kind") == "tiny" or info.get("base_model") == "tiny":
        base = ("The base model is a tiny demo model that knows only the bundled sample posts: expect "
                "broken sentences.")
    else:
        base = f"The model suffers from [the same limitations and bias as GPT-2]({GPT2_LIMITS})."
        if _arch(info) != "GPT-2":
            base = f"The model suffers from the same limitations and bias as its base model, `{info.get('base_model')}`."
    return f"""## Limitations and bias

{base}

In addition, the data present in the user's posts further affects the text generated by the model.
What it writes is not what the person said: label anything it posts as written by a bot."""


def about() -> str:
    return f"""## About

*Made with mimicbot*, a bot that learns to write like a person, after [huggingtweets]({HUGGINGTWEETS}) by
Boris Dayma."""
