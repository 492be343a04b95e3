"""Malformed imports, generated: every one must end in ONE line of error (a MimicbotError), quickly, with the
database untouched.

A seeded generator builds broken inputs of fifteen classes (truncated and corrupt zips, zip bombs, `../`
member names, truncated `tweets.js`, wrong JSON types, deep nesting, huge fields, non-UTF-8, empty files,
`.jsonl` lines that are not objects, lone surrogates, unsupported compression, duplicate members, broken
`note-tweet.js`). The fast suite runs FAST_PER_CLASS cases of each class in-process; the run marked `slow`
runs SLOW_PER_CLASS of each (over 1,000 in all) and a sample through the installed `mimicbot` command.

Run `python -m tests.test_import_fuzz [PER_CLASS]` for a table of outcomes per class.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import MimicbotError, SourceError
from bot.service import Mimicbot

SEED = 20261202
FAST_PER_CLASS = 20
SLOW_PER_CLASS = 80
TIME_LIMIT = 5.0  # seconds one malformed input may take to be refused
HANG_LIMIT = 60.0  # a case still running after this is stopped and counted as broken

VOCAB = ("the garden needs rain again today and the tomatoes are sulking while I write tests about bytes "
         "coffee first then everything else probably including the bug nobody could reproduce").split()
TWEET_TIME = "Sat Dec 06 18:20:30 +0000 2025"


# -- building blocks ------------------------------------------------------------------------------------------


def _words(rng: random.Random, lo: int = 5, hi: int = 14) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(lo, hi)))


def _tweet(rng: random.Random, i: int) -> dict:
    tid = str(1_700_000_000_000_000_000 + i * 1000 + rng.randrange(1000))
    return {"tweet": {"id_str": tid, "id": tid, "full_text": _words(rng), "created_at": TWEET_TIME, "lang": "en",
                      "retweeted": False}}


def _items(rng: random.Random, n: int | None = None) -> list[dict]:
    return [_tweet(rng, i) for i in range(n if n is not None else rng.randint(1, 6))]


def _ytd(var: str, items) -> str:
    return f"window.YTD.{var}.part0 = " + json.dumps(items)


def _account(username="fuzzy", name="Fuzzy Tester", account_id="42") -> str:
    return _ytd("account", [{"account": {"username": username, "accountDisplayName": name, "accountId": account_id}}])


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted, for the duplicate-member cases
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, (2025, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return buf.getvalue()


def _archive_members(rng: random.Random, tweets_js: bytes | None = None) -> list[tuple[str, bytes]]:
    return [("data/account.js", _account().encode()),
            ("data/tweets.js", tweets_js if tweets_js is not None else _ytd("tweets", _items(rng)).encode())]


def _central_entries(data: bytes) -> list[tuple[int, str, int]]:
    """(offset of the central directory entry, name, offset of the local header) for each member."""
    eocd = data.rfind(b"PK\x05\x06")
    count, _size, cd_offset = struct.unpack("<HII", data[eocd + 10:eocd + 20])
    out, pos = [], cd_offset
    for _ in range(count):
        n, m, k = struct.unpack("<HHH", data[pos + 28:pos + 34])
        local = struct.unpack("<I", data[pos + 42:pos + 46])[0]
        out.append((pos, data[pos + 46:pos + 46 + n].decode("utf-8", "replace"), local))
        pos += 46 + n + m + k
    return out


def _data_span(data: bytes, local: int) -> tuple[int, int]:
    """Where a member's stored bytes lie: (start, length)."""
    n, e = struct.unpack("<HH", data[local + 26:local + 30])
    csize = struct.unpack("<I", data[local + 18:local + 22])[0]
    return local + 30 + n + e, csize


def _tweets_entry(data: bytes) -> tuple[int, str, int]:
    return next(e for e in _central_entries(data) if e[1].endswith("tweets.js"))


# -- cases ----------------------------------------------------------------------------------------------------


@dataclass
class Case:
    cls: str
    desc: str
    write: Callable[[Path], tuple[Path, str | None]]  # folder → (the path to import, --handle)


def _file(name: str, data: bytes, handle: str | None = None):
    def write(d: Path):
        p = d / name
        p.write_bytes(data)
        return p, handle
    return write


def _folder(members: list[tuple[str, bytes]], handle: str | None = None):
    def write(d: Path):
        root = d / "archive"
        for name, data in members:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        root.mkdir(exist_ok=True)
        return root, handle
    return write


def _as_zip_folder_or_js(rng: random.Random, tweets_js: bytes, cls: str, desc: str) -> Case:
    """The same broken tweets.js as a zip, an unpacked folder or a bare file."""
    layout = rng.choice(("zip", "folder", "js"))
    if layout == "zip":
        return Case(cls, f"{desc} (zip)", _file("a.zip", _zip(_archive_members(rng, tweets_js))))
    if layout == "folder":
        return Case(cls, f"{desc} (folder)", _folder(_archive_members(rng, tweets_js)))
    return Case(cls, f"{desc} (bare tweets.js)", _file("tweets.js", tweets_js, "fuzzy"))


def gen_truncated_zip(rng: random.Random) -> Case:
    data = _zip(_archive_members(rng), rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED)))
    cut = rng.randrange(0, len(data) - 1)
    return Case("truncated_zip", f"zip cut at {cut}/{len(data)}", _file("cut.zip", data[:cut]))


def gen_corrupt_zip(rng: random.Random) -> Case:
    data = bytearray(_zip(_archive_members(rng), rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED))))
    cd, name, local = _tweets_entry(bytes(data))
    start, length = _data_span(bytes(data), local)
    how = rng.choice(("flip data", "local magic", "local name", "bigger size", "smaller size", "crc"))
    if how == "flip data":
        for _ in range(rng.randint(1, 4)):
            data[start + rng.randrange(length)] ^= rng.randrange(1, 256)
    elif how == "local magic":
        data[local:local + 4] = b"PK\x09\x09"
    elif how == "local name":
        data[local + 30] ^= 0x20
    elif how in ("bigger size", "smaller size"):
        size = struct.unpack("<I", data[cd + 24:cd + 28])[0]
        new = size + rng.randint(1, 5000) if how == "bigger size" else rng.randrange(0, max(1, size))
        data[cd + 24:cd + 28] = struct.pack("<I", new)
        data[local + 22:local + 26] = struct.pack("<I", new)
    else:
        data[cd + 16:cd + 20] = struct.pack("<I", rng.getrandbits(32))
        data[local + 14:local + 18] = data[cd + 16:cd + 20]
    return Case("corrupt_zip", f"{how} in {name}", _file("corrupt.zip", bytes(data)))


_BOMBS: dict[tuple, bytes] = {}


def _bomb(mb: int, parts: int, lying: bool) -> bytes:
    """A zip whose tweets inflate to `mb` megabytes of spaces inside one post (about 1,000:1). Cached: the
    same bomb is built once per run."""
    key = (mb, parts, lying)
    if key not in _BOMBS:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:  # fast, still ~1,000:1
            z.writestr("data/account.js", _account())
            for part in range(parts):
                info = zipfile.ZipInfo("data/tweets.js" if part == 0 else f"data/tweets-part{part}.js",
                                       (2025, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with z.open(info, "w") as f:
                    f.write(b'window.YTD.tweets.part0 = [{"tweet": {"id_str": "1", "full_text": "')
                    chunk = b" " * (1 << 20)
                    for _ in range(max(1, mb // parts)):
                        f.write(chunk)
                    f.write(b'"}}]')
        data = bytearray(buf.getvalue())
        if lying:  # the directory claims a hundred bytes; the stream holds the megabytes
            cd, _name, _local = _tweets_entry(bytes(data))
            data[cd + 24:cd + 28] = struct.pack("<I", 100)
        _BOMBS[key] = bytes(data)
    return _BOMBS[key]


def gen_zip_bomb(rng: random.Random) -> Case:
    """A few hundred kilobytes that inflate to tens or hundreds of megabytes."""
    mb = rng.choice((4, 16, 64))
    how = rng.choice(("one post", "many parts", "lying size"))
    parts = 4 if how == "many parts" else 1
    return Case("zip_bomb", f"{mb} MB ({how})", _file("bomb.zip", _bomb(mb, parts, how == "lying size")))


TRAVERSAL = ("../data/tweets.js", "/data/tweets.js", "data/../../tweets.js", "..\\data\\tweets.js",
             "C:/data/tweets.js", "data/./../../etc/tweets.js", "../../../../tmp/account.js", "data/../../x.jpg",
             "\\\\server\\share\\tweets.js", "data/tweets_media/../../../evil.js")


def gen_traversal(rng: random.Random) -> Case:
    bad = rng.choice(TRAVERSAL)
    members = _archive_members(rng)
    if rng.random() < 0.5:
        members.append((bad, b"window.YTD.x.part0 = []"))  # an extra member with an escaping name
    else:
        members[1] = (bad, members[1][1])  # the tweets themselves under the escaping name
    rng.shuffle(members)
    return Case("traversal_name", f"member named {bad!r}", _file("trav.zip", _zip(members)))


def gen_truncated_ytd(rng: random.Random) -> Case:
    text = _ytd("tweets", _items(rng)).encode()
    cut = rng.randrange(0, len(text) - 1)
    return _as_zip_folder_or_js(rng, text[:cut], "truncated_tweets_js", f"tweets.js cut at {cut}/{len(text)}")


WRONG_VALUES = (0, 17, -3, 1.5, True, False, None, [], ["1"], {}, {"a": 1}, "")


def _wrong_for(field: str, rng: random.Random):
    """A value of the wrong type (or shape) for a field of an archive tweet."""
    if field in ("id_str", "id"):
        return rng.choice([v for v in WRONG_VALUES if v not in (0, 17)] + ["abc", "12a", "-5", "1e9", " 1"])
    if field == "full_text":
        return rng.choice([v for v in WRONG_VALUES if v != ""])
    if field == "created_at":
        return rng.choice([0, 1.5, True, [], {}, "yesterday", "2025-13-45", "Sat Dec 99 99:20:30 +0000 2025"])
    if field == "edit_info":
        return rng.choice([[], "x", 3, {"initial": []}, {"initial": {"editTweetIds": "1"}},
                           {"initial": {"editTweetIds": [1.5]}}, {"edit": {"initialTweetId": []}}])
    return rng.choice([0, 1.5, True, [], {}, ["x"]])  # lang, in_reply_to_status_id_str, quoted...


def gen_wrong_types(rng: random.Random) -> Case:
    where = rng.choice(("top", "item", "tweet", "field", "field", "field", "account", "jsonl"))
    if where == "top":
        text = "window.YTD.tweets.part0 = " + json.dumps(rng.choice([{}, "s", 3, None, True, {"tweet": {}}]))
        return _as_zip_folder_or_js(rng, text.encode(), "wrong_json_types", f"tweets.js holds {text[26:40]}")
    items = _items(rng)
    k = rng.randrange(len(items))
    if where == "item":
        items[k] = rng.choice(["a string", 3, None, [1, 2], True])
        desc = f"item {k} is {items[k]!r}"
    elif where == "tweet":
        items[k] = {"tweet": rng.choice(["a string", 3, None, [1, 2], True])}
        desc = f"item {k} tweet is {items[k]['tweet']!r}"
    elif where == "field":
        field = rng.choice(("id_str", "id", "full_text", "created_at", "lang", "in_reply_to_status_id_str",
                            "edit_info", "is_quote_status"))
        value = _wrong_for(field, rng)
        items[k]["tweet"][field] = value
        if field == "id":
            del items[k]["tweet"]["id_str"]
        desc = f"{field} = {value!r}"
    elif where == "account":
        shape = rng.choice([{}, [], "x", [1], [{"account": []}], [{"account": {"username": 5}}],
                            [{"account": {"username": ["a"]}}], [{"account": {"username": "ok_name",
                                                                              "accountDisplayName": 5}}],
                            [{"account": {"username": "ok_name", "accountId": {"a": 1}}}],
                            [{"account": {"username": "../../etc"}}], [{"account": {"username": "a b"}}]])
        text = "window.YTD.account.part0 = " + json.dumps(shape)
        members = [("data/account.js", text.encode()), ("data/tweets.js", _ytd("tweets", items).encode())]
        return Case("wrong_json_types", f"account.js holds {shape!r}", _file("acc.zip", _zip(members)))
    else:
        bad = rng.choice([{"text": "fine words", "id": [1]}, {"text": "fine words", "id": {"a": 1}},
                          {"text": "fine words", "id": 1.5}, {"text": "fine words", "id": True},
                          {"text": "fine words", "created_at": 5}, {"text": "fine words", "created_at": []},
                          {"text": ["fine words"]}, {"text": {"a": 1}}, {"text": None}])
        lines = [json.dumps({"text": _words(rng)}) for _ in range(rng.randint(0, 3))] + [json.dumps(bad)]
        return Case("wrong_json_types", f"jsonl line {bad!r}", _file("p.jsonl", "\n".join(lines).encode(), "fuzzy"))
    return _as_zip_folder_or_js(rng, _ytd("tweets", items).encode(), "wrong_json_types", desc)


def _deep(depth: int, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a": ' * depth + "1" + "}" * depth


def gen_deep_nesting(rng: random.Random) -> Case:
    depth = rng.choice((1_000, 5_000, 50_000, 200_000))
    where = rng.choice(("top", "field", "account", "jsonl"))
    if where == "top":
        text = "window.YTD.tweets.part0 = [" + _deep(depth, rng) + "]"
        return _as_zip_folder_or_js(rng, text.encode(), "deep_nesting", f"depth {depth} item")
    if where == "field":
        items = _items(rng)
        body = json.dumps(items)
        text = "window.YTD.tweets.part0 = " + body[:-2] + ', "entities": ' + _deep(depth, rng) + "}}]"
        return _as_zip_folder_or_js(rng, text.encode(), "deep_nesting", f"depth {depth} in a tweet")
    if where == "account":
        text = "window.YTD.account.part0 = [" + _deep(depth, rng) + "]"
        members = [("data/account.js", text.encode()), ("data/tweets.js", _ytd("tweets", _items(rng)).encode())]
        return Case("deep_nesting", f"depth {depth} in account.js", _file("deep.zip", _zip(members)))
    line = '{"text": "fine words here", "x": ' + _deep(depth, rng) + "}"
    return Case("deep_nesting", f"depth {depth} in a jsonl line", _file("deep.jsonl", line.encode(), "fuzzy"))


def gen_huge_field(rng: random.Random) -> Case:
    size = rng.choice((120_000, 1_000_000, 4_000_000, 16_000_000))
    big = ("word " * (size // 5 + 1))[:size]
    where = rng.choice(("full_text", "display name", "txt", "jsonl", "id"))
    if where == "full_text":
        items = _items(rng)
        items[rng.randrange(len(items))]["tweet"]["full_text"] = big
        return _as_zip_folder_or_js(rng, _ytd("tweets", items).encode(), "huge_field", f"full_text of {size:,}")
    if where == "display name":
        members = [("data/account.js", _account(name=big).encode()),
                   ("data/tweets.js", _ytd("tweets", _items(rng)).encode())]
        return Case("huge_field", f"display name of {size:,}", _file("big.zip", _zip(members)))
    if where == "id":
        items = _items(rng)
        items[0]["tweet"]["id_str"] = items[0]["tweet"]["id"] = "7" * min(size, 1_000_000)
        return _as_zip_folder_or_js(rng, _ytd("tweets", items).encode(), "huge_field", "id of a million digits")
    if where == "txt":
        return Case("huge_field", f"txt line of {size:,}", _file("big.txt", f"a fine line\n{big}\n".encode(), "fuzzy"))
    line = json.dumps({"text": big})
    return Case("huge_field", f"jsonl text of {size:,}", _file("big.jsonl", line.encode(), "fuzzy"))


def _break_utf8(data: bytes, rng: random.Random) -> bytes:
    how = rng.choice(("insert", "latin-1", "utf-16", "cut"))
    if how == "insert":
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice((b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80")) + data[at:]
    if how == "latin-1":
        return (data.decode("utf-8").replace("the", "thé").replace("a", "á") + " café").encode("latin-1")
    if how == "utf-16":
        return data.decode("utf-8").encode(rng.choice(("utf-16", "utf-16-le", "utf-32")))
    return data + "é".encode()[:1]


def gen_non_utf8(rng: random.Random) -> Case:
    where = rng.choice(("tweets", "account", "txt", "jsonl"))
    if where == "tweets":
        bad = _break_utf8(_ytd("tweets", _items(rng)).encode(), rng)
        return _as_zip_folder_or_js(rng, bad, "non_utf8", "tweets.js")
    if where == "account":
        members = [("data/account.js", _break_utf8(_account().encode(), rng)),
                   ("data/tweets.js", _ytd("tweets", _items(rng)).encode())]
        return Case("non_utf8", "account.js", _file("enc.zip", _zip(members)))
    if where == "txt":
        text = "\n".join(_words(rng) for _ in range(rng.randint(1, 5))).encode()
        return Case("non_utf8", "txt", _file("enc.txt", _break_utf8(text, rng), "fuzzy"))
    text = "\n".join(json.dumps({"text": _words(rng)}) for _ in range(rng.randint(1, 5))).encode()
    return Case("non_utf8", "jsonl", _file("enc.jsonl", _break_utf8(text, rng), "fuzzy"))


def gen_empty(rng: random.Random) -> Case:
    how = rng.choice(("empty zip", "empty tweets.js", "empty array", "empty txt", "blank txt", "empty jsonl",
                      "blank jsonl", "empty bare js", "empty folder", "zero-byte zip", "empty parts"))
    if how == "empty zip":
        return Case("empty", how, _file("e.zip", _zip([])))
    if how == "zero-byte zip":
        return Case("empty", how, _file("e.zip", b""))
    if how == "empty tweets.js":
        return Case("empty", how, _file("e.zip", _zip([("data/account.js", _account().encode()),
                                                        ("data/tweets.js", b"")])))
    if how == "empty array":
        return _as_zip_folder_or_js(rng, b"window.YTD.tweets.part0 = [ ]", "empty", how)
    if how == "empty parts":
        members = [("data/account.js", _account().encode()), ("data/tweets.js", b"window.YTD.tweets.part0 = []"),
                   ("data/tweets-part1.js", b"window.YTD.tweets.part1 = []")]
        return Case("empty", how, _file("e.zip", _zip(members)))
    if how == "empty txt":
        return Case("empty", how, _file("e.txt", b"", "fuzzy"))
    if how == "blank txt":
        return Case("empty", how, _file("e.txt", b"\n  \n\t\n" * rng.randint(1, 5), "fuzzy"))
    if how == "empty jsonl":
        return Case("empty", how, _file("e.jsonl", b"", "fuzzy"))
    if how == "blank jsonl":
        return Case("empty", how, _file("e.jsonl", b"\n\n   \n", "fuzzy"))
    if how == "empty bare js":
        return Case("empty", how, _file("tweets.js", b"", "fuzzy"))
    return Case("empty", how, _folder([("data/account.js", _account().encode())]))


def gen_jsonl_not_objects(rng: random.Random) -> Case:
    bad = rng.choice(["[]", "[1, 2]", "1", '"a string"', "null", "true", "{}", '{"txt": "x"}', '{"text": 1}',
                      '{"text": "ab', "{text: 'x'}", "NaN", '{"text": "fine"} trailing', "\x00\x01", "}{"])
    lines = [json.dumps({"text": _words(rng)}) for _ in range(rng.randint(0, 4))]
    lines.insert(rng.randint(0, len(lines)), bad)
    return Case("jsonl_not_object", f"line {bad!r}", _file("p.jsonl", "\n".join(lines).encode(), "fuzzy"))


def gen_surrogates(rng: random.Random) -> Case:
    lone = rng.choice(("\\ud800", "\\udfff", "\\ud83d", "abc\\udc00def"))
    if rng.random() < 0.5:
        text = _ytd("tweets", _items(rng)).replace('"full_text": "', f'"full_text": "{lone}', 1)
        return _as_zip_folder_or_js(rng, text.encode(), "lone_surrogate", f"full_text with {lone}")
    line = '{"text": "fine ' + lone + ' words"}'
    return Case("lone_surrogate", f"jsonl text with {lone}", _file("s.jsonl", line.encode(), "fuzzy"))


def gen_bad_compression(rng: random.Random) -> Case:
    data = bytearray(_zip(_archive_members(rng)))
    cd, name, local = _tweets_entry(bytes(data))
    how = rng.choice(("method", "method", "encrypted"))
    if how == "method":
        method = rng.choice((1, 6, 7, 9, 10, 18, 19, 97, 98, 99, 95))
        data[cd + 10:cd + 12] = struct.pack("<H", method)
        data[local + 8:local + 10] = struct.pack("<H", method)
        desc = f"compression method {method}"
    else:
        flags = struct.unpack("<H", data[cd + 8:cd + 10])[0] | 1
        data[cd + 8:cd + 10] = struct.pack("<H", flags)
        data[local + 6:local + 8] = struct.pack("<H", flags)
        desc = "encrypted member"
    return Case("bad_compression", f"{desc} on {name}", _file("c.zip", bytes(data)))


def gen_duplicates(rng: random.Random) -> Case:
    members = _archive_members(rng)
    dup = rng.choice(members)
    other = (dup[0], _ytd("tweets", _items(rng)).encode() if dup[0].endswith("tweets.js") else _account("other").encode())
    members.insert(rng.randint(0, len(members)), other)
    return Case("duplicate_member", f"{dup[0]} twice", _file("dup.zip", _zip(members)))


def gen_note_tweet(rng: random.Random) -> Case:
    shape = rng.choice([
        "window.YTD.note_tweet.part0 = {}", "window.YTD.note_tweet.part0 = [1]",
        'window.YTD.note_tweet.part0 = [{"noteTweet": []}]',
        'window.YTD.note_tweet.part0 = [{"noteTweet": {"core": {"text": 5}, "createdAt": "2025-12-06T18:20:30.000Z"}}]',
        'window.YTD.note_tweet.part0 = [{"noteTweet": {"core": [], "createdAt": "2025-12-06T18:20:30.000Z"}}]',
        'window.YTD.note_tweet.part0 = [{"noteTweet": {"core": {"text": "x"}, "createdAt": 7}}]',
        'window.YTD.note_tweet.part0 = [{"noteTweet": {"core": {"text": "x"}, "createdAt": "soon"}}]',
        'window.YTD.note_tweet.part0 = [{"noteTweet": {"core": {"text": "x"}, "tweetId": ["1"]}}]',
        'window.YTD.note_tweet.part0 = [{"noteTweet": {"core": {"text": "x"',
        "window.YTD.note_tweet.part0 = [" + "[" * 20_000 + "]" * 20_000 + "]",
    ])
    members = _archive_members(rng) + [("data/note-tweet.js", shape.encode())]
    return Case("broken_note_tweet", shape[30:90], _file("n.zip", _zip(members)))


GENERATORS: dict[str, Callable[[random.Random], Case]] = {
    "truncated_zip": gen_truncated_zip,
    "corrupt_zip": gen_corrupt_zip,
    "zip_bomb": gen_zip_bomb,
    "traversal_name": gen_traversal,
    "truncated_tweets_js": gen_truncated_ytd,
    "wrong_json_types": gen_wrong_types,
    "deep_nesting": gen_deep_nesting,
    "huge_field": gen_huge_field,
    "non_utf8": gen_non_utf8,
    "empty": gen_empty,
    "jsonl_not_object": gen_jsonl_not_objects,
    "lone_surrogate": gen_surrogates,
    "bad_compression": gen_bad_compression,
    "duplicate_member": gen_duplicates,
    "broken_note_tweet": gen_note_tweet,
}


def cases(cls: str, n: int, seed: int = SEED) -> list[Case]:
    rng = random.Random(f"{seed}-{cls}")
    return [GENERATORS[cls](rng) for _ in range(n)]


# -- running a case -------------------------------------------------------------------------------------------


def db_fingerprint(settings: Settings) -> str:
    h = hashlib.sha256()
    for suffix in ("", "-wal"):
        p = Path(f"{settings.db_path}{suffix}")
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()


@dataclass
class Outcome:
    case: Case
    kind: str  # refused | crashed | accepted
    detail: str
    seconds: float
    db_changed: bool

    @property
    def held(self) -> bool:
        return self.kind == "refused" and self.seconds < TIME_LIMIT and not self.db_changed

    def __str__(self) -> str:
        return (f"[{self.case.cls}] {self.case.desc}: {self.kind} in {self.seconds:.2f}s"
                f"{' DB CHANGED' if self.db_changed else ''}: {self.detail[:200]}")


class _Hang(BaseException):
    pass


@contextlib.contextmanager
def _hang_guard(seconds: float):
    """Stop a case that runs far past the time limit (between Python bytecodes; main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise _Hang()

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_case(bot: Mimicbot, case: Case, folder: Path) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    path, handle = case.write(folder)
    before = db_fingerprint(bot.settings)
    t0 = time.perf_counter()
    try:
        with _hang_guard(HANG_LIMIT):
            bot.fetch_blocking([str(path)], handle)
        kind, detail = "accepted", "no error"
    except _Hang:
        kind, detail = "crashed", f"still running after {HANG_LIMIT:.0f}s: stopped"
    except MimicbotError as e:
        text = str(e)
        one_line = "\n" not in text and "\r" not in text and 0 < len(text) <= 400
        kind, detail = ("refused" if one_line else "crashed"), f"{type(e).__name__}: {text!r}"
    except Exception as e:  # noqa: BLE001 - what the fuzzer is looking for
        kind, detail = "crashed", f"{type(e).__name__}: {str(e)[:200]!r}"
    seconds = time.perf_counter() - t0
    return Outcome(case, kind, detail, seconds, db_fingerprint(bot.settings) != before)


def run_all(bot: Mimicbot, all_cases: list[Case], tmp: Path) -> list[Outcome]:
    out = []
    for i, case in enumerate(all_cases):
        out.append(run_case(bot, case, tmp / f"case{i}"))
        for p in sorted((tmp / f"case{i}").rglob("*"), reverse=True):  # big inputs do not pile up
            p.unlink() if p.is_file() else p.rmdir()
    return out


def table(outcomes: list[Outcome]) -> str:
    """Per class: cases tried, held, broken (and how), and the slowest case."""
    lines = [f"{'class':22} {'tried':>6} {'held':>6} {'crashed':>8} {'accepted':>9} {'slow':>5} {'db':>4} {'max s':>6}"]
    for cls in [*GENERATORS, None]:
        mine = [o for o in outcomes if cls is None or o.case.cls == cls]
        if not mine:
            continue
        lines.append(f"{cls or 'total':22} {len(mine):6} {sum(o.held for o in mine):6} "
                     f"{sum(o.kind == 'crashed' for o in mine):8} {sum(o.kind == 'accepted' for o in mine):9} "
                     f"{sum(o.seconds >= TIME_LIMIT for o in mine):5} {sum(o.db_changed for o in mine):4} "
                     f"{max(o.seconds for o in mine):6.2f}")
    return "\n".join(lines)


# -- the tests ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_bot(tmp_path_factory):
    """A store that already holds an account, so 'nothing changed' has something to protect (one per module:
    every case checks the database is unchanged, so they can share it)."""
    from bot.samples.generate import sample_path

    root = tmp_path_factory.mktemp("fuzz")
    settings = Settings(mimicbot_data_dir=root / "data", mimicbot_models_dir=root / "models", _env_file=None)
    with Mimicbot(settings) as bot:
        bot.fetch_blocking([str(sample_path("grace_gardens"))])
        yield bot


def _check(outcomes: list[Outcome]) -> None:
    broke = [str(o) for o in outcomes if not o.held]
    assert not broke, f"{len(broke)} of {len(outcomes)} malformed inputs broke:\n" + "\n".join(broke[:25])


@pytest.mark.parametrize("cls", list(GENERATORS))
def test_malformed_imports_are_refused_in_one_line(seeded_bot, tmp_path, cls):
    outcomes = run_all(seeded_bot, cases(cls, FAST_PER_CLASS), tmp_path / "cases")
    _check(outcomes)
    assert all(isinstance(_exc_type(o), type) and issubclass(_exc_type(o), SourceError) for o in outcomes)


def _exc_type(o: Outcome):
    import bot.errors as errors

    return getattr(errors, o.detail.split(":", 1)[0], None)


@pytest.mark.slow
def test_a_thousand_malformed_imports(seeded_bot, tmp_path):
    all_cases = [c for cls in GENERATORS for c in cases(cls, SLOW_PER_CLASS, seed=SEED + 1)]
    assert len(all_cases) >= 1000
    outcomes = run_all(seeded_bot, all_cases, tmp_path / "cases")
    print("\n" + table(outcomes))
    _check(outcomes)


@pytest.mark.slow
def test_malformed_imports_through_the_installed_cli(tmp_path):
    """A sample through the real `mimicbot fetch` process: exit 2, one line on stderr, no traceback."""
    exe = Path(sys.executable).parent / "mimicbot"
    if not exe.exists():
        pytest.skip("mimicbot is not installed in this environment")
    rng = random.Random(SEED + 2)
    sample = [rng.choice(cases(cls, 3, seed=SEED + 2)) for cls in GENERATORS]
    sample += [c for c in cases("wrong_json_types", 5, seed=SEED + 3)]
    env = {**os.environ, "MIMICBOT_DATA_DIR": str(tmp_path / "data"), "MIMICBOT_MODELS_DIR": str(tmp_path / "models")}
    settings = Settings(mimicbot_data_dir=tmp_path / "data", mimicbot_models_dir=tmp_path / "models", _env_file=None)
    with Mimicbot(settings) as bot:  # the database exists and holds an account before the first bad input
        from bot.samples.generate import sample_path

        bot.fetch_blocking([str(sample_path("ada_bytes"))])
    broke = []
    for i, case in enumerate(sample):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        path, handle = case.write(folder)
        args = [str(exe), "fetch", str(path)] + (["--handle", handle] if handle else [])
        before = db_fingerprint(settings)
        res = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        lines = res.stderr.strip().splitlines()
        if (res.returncode != 2 or len(lines) != 1 or "Traceback" in res.stderr or not lines[0].startswith("error:")
                or db_fingerprint(settings) != before):
            broke.append(f"[{case.cls}] {case.desc}: exit {res.returncode}, stderr {res.stderr[-300:]!r}")
    assert len(sample) >= 20
    assert not broke, "\n".join(broke)


if __name__ == "__main__":  # python -m tests.test_import_fuzz [PER_CLASS]: the table of outcomes
    import tempfile

    per_class = int(sys.argv[1]) if len(sys.argv) > 1 else FAST_PER_CLASS
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(mimicbot_data_dir=Path(tmp) / "data", mimicbot_models_dir=Path(tmp) / "models", _env_file=None)
        from bot.samples.generate import sample_path

        with Mimicbot(s) as b:
            b.fetch_blocking([str(sample_path("grace_gardens"))])
            results = run_all(b, [c for cls in GENERATORS for c in cases(cls, per_class)], Path(tmp) / "cases")
    print(table(results))
    for o in results:
        if not o.held:
            print(o)
