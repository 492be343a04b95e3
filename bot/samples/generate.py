"""Builds the bundled sample archives (synthetic posts, written for demos and tests).

Run `python -m bot.samples.generate` to rebuild `bot/samples/*.zip`. Deterministic: same seed, same bytes.
Two invented people: @ada_bytes (a programmer who loves coffee) and @grace_gardens (a gardener).
Each archive has the shape of a real X export: data/account.js and data/tweets.js
(`window.YTD.tweets.part0 = [...]`), with retweets, replies, links, HTML entities and short posts mixed in.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent

PEOPLE = {
    "ada_bytes": {
        "name": "Ada Bytes",
        "id": "1000000000000000001",
        "openers": ["My dream is", "Today I learned", "Hot take:", "Reminder:", "Honestly,", "Small win:",
                    "Confession:", "Every morning", "Unpopular opinion:", "Note to self:"],
        "subjects": ["a compiler that explains itself", "coffee strong enough to fix flaky tests",
                     "the test suite going green on the first try", "a code review with zero nitpicks",
                     "rewriting the parser in a weekend", "a laptop battery that lasts a sprint",
                     "pair programming with my cat", "a database that never locks", "tabs and spaces living in peace",
                     "shipping on a Friday without fear", "a regex I can still read tomorrow",
                     "documentation that answers the actual question", "an espresso machine with an API",
                     "the build finishing before my coffee does", "a bug that reproduces every time"],
        "tails": ["and I am not even sorry.", "send help and coffee.", "that is the whole plan.",
                  "is that too much to ask?", "and then a nap.", "before lunch, obviously.", "one day, maybe.",
                  "and I will write a blog post about it.", "so I made another pot.", "ask me how I know."],
        "tags": ["#python", "#coffee", "#devlife", "#testing", "#opensource"],
        "friends": ["@grace_gardens", "@linus_coffee", "@the_real_bob"],
        "shorts": ["lol", "same", "ship it", "coffee?", "yes!!", "nope"],
    },
    "grace_gardens": {
        "name": "Grace Gardens",
        "id": "1000000000000000002",
        "openers": ["My dream is", "This morning", "Garden update:", "Tip of the day:", "Honestly,",
                    "Little joy:", "Overheard at the market:", "Every spring", "Plant question:", "Reminder:"],
        "subjects": ["tomatoes that ripen all at once", "a greenhouse full of basil", "compost that smells like rain",
                     "the first snowdrops under the apple tree", "a slug-free lettuce bed", "seed swaps with the neighbours",
                     "a rain barrel that never runs dry", "bees on every lavender stalk", "a shed with a proper kettle",
                     "squash taking over the whole path", "roses that forgive my pruning", "a wheelbarrow with two wheels",
                     "the pumpkin finally turning orange", "hedgehogs moving in under the hedge", "strawberries the birds ignore"],
        "tails": ["and a cup of tea.", "the soil will tell you.", "patience is half of gardening.",
                  "and muddy boots by the door.", "worth every blister.", "the robins agree.", "before the frost comes.",
                  "and I will share the cuttings.", "which is all I want really.", "ask the worms."],
        "tags": ["#gardening", "#growyourown", "#compost", "#bees", "#allotment"],
        "friends": ["@ada_bytes", "@monty_digs", "@seedswap_sue"],
        "shorts": ["so pretty", "rain!", "finally", "look", "weeds again", "ugh slugs"],
    },
}


def _post(rng: random.Random, p: dict) -> tuple[str, dict]:
    """One synthetic post and the entity hints; kinds mixed like a real timeline."""
    roll = rng.random()
    if roll < 0.12:
        friend = rng.choice(p["friends"])
        return f"RT {friend}: {rng.choice(p['openers'])} {rng.choice(p['subjects'])} {rng.choice(p['tails'])}", {"rt": True}
    if roll < 0.20:
        return rng.choice(p["shorts"]) + rng.choice(["", " " + rng.choice(p["tags"]), " https://t.co/" + _slug(rng)]), {}
    text = f"{rng.choice(p['openers'])} {rng.choice(p['subjects'])} {rng.choice(p['tails'])}"
    extra = rng.random()
    if extra < 0.15:
        text += " " + rng.choice(p["tags"])
    elif extra < 0.25:
        text += f" https://t.co/{_slug(rng)}"
    elif extra < 0.32:
        text = text.replace(" and ", " &amp; ", 1)
    elif extra < 0.38:
        text += "\n\n" + rng.choice(p["tails"]).capitalize()
    meta: dict = {}
    if rng.random() < 0.15:
        friend = rng.choice(p["friends"])
        text = f"{friend} {text}"
        meta["reply_to"] = friend
    return text, meta


def _slug(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10))


def build_archive(handle: str, n_posts: int, seed: int) -> bytes:
    p = PEOPLE[handle]
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
    tweets = []
    seen: set[str] = set()
    i = 0
    while len(tweets) < n_posts:
        text, meta = _post(rng, p)
        if text in seen:
            continue
        seen.add(text)
        i += 1
        when = start + timedelta(hours=7 * i, minutes=rng.randrange(60))
        esc = text.replace("&amp;", "\x00").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\x00", "&amp;")
        tweet = {
            "id_str": str(1500000000000000000 + int(p["id"][-1]) * 10_000_000 + i),
            "full_text": esc,
            "created_at": when.strftime("%a %b %d %H:%M:%S +0000 %Y"),
            "lang": "en",
            "retweeted": False,
            "favorite_count": str(rng.randrange(50)),
            "retweet_count": str(rng.randrange(10)),
            "entities": {"urls": [], "user_mentions": [], "hashtags": [], "symbols": []},
        }
        if "reply_to" in meta:
            tweet["in_reply_to_status_id_str"] = str(1400000000000000000 + i)
            tweet["in_reply_to_screen_name"] = meta["reply_to"][1:]
        tweets.append({"tweet": tweet})
    account = [{"account": {"username": handle, "accountDisplayName": p["name"], "accountId": p["id"],
                            "createdAt": "2015-03-01T10:00:00.000Z"}}]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, payload, var in (("data/account.js", account, "account"), ("data/tweets.js", tweets, "tweets")):
            info = zipfile.ZipInfo(name, date_time=(2025, 12, 6, 18, 20, 30))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, f"window.YTD.{var}.part0 = " + json.dumps(tweets if var == "tweets" else payload, indent=2, ensure_ascii=False))
    return buf.getvalue()


SAMPLES = {"ada_bytes": (400, 7), "grace_gardens": (300, 11)}


def sample_path(handle: str = "ada_bytes") -> Path:
    return HERE / f"{handle}.zip"


def main() -> None:
    for handle, (n, seed) in SAMPLES.items():
        sample_path(handle).write_bytes(build_archive(handle, n, seed))
        print(sample_path(handle))


if __name__ == "__main__":
    main()
