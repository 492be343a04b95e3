"""Sources on disk: a person's X archive (zip, folder or bare tweets.js) and plain .txt / .jsonl files.

Archives are parsed as data, never evaluated: the text after the first `[` is JSON.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath

from ..errors import SourceError, ValidationError
from .base import AccountInfo, FetchResult, RawPost, normalise_handle

_TWEET_FILES = ("tweets.js", "tweet.js")


def open_file_source(path: Path, handle: str | None):
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    name = path.name.lower()
    if name.endswith(".txt"):
        return TextFileSource(path, _need_handle(path, handle))
    if name.endswith(".jsonl"):
        return JsonlFileSource(path, _need_handle(path, handle))
    if path.is_dir() or name.endswith((".zip", ".js")):
        return ArchiveSource(path, handle)
    raise ValidationError(f"{path}: not a .zip/.js X archive, an archive folder, a .txt or a .jsonl file")


def _need_handle(path: Path, handle: str | None) -> str:
    if not handle or not normalise_handle(handle):
        raise ValidationError(f"{path.name}: a .txt or .jsonl source needs --handle NAME (whose posts these are)")
    return normalise_handle(handle)


# -- X archive ------------------------------------------------------------------------------------


def parse_ytd(text: str, what: str) -> list:
    """`window.YTD.x.part0 = [...]` → the list. Raises SourceError when it is not that shape."""
    start = text.find("[")
    if start < 0:
        raise SourceError(f"malformed archive: {what} has no JSON array")
    try:
        data = json.loads(text[start:])
    except json.JSONDecodeError as e:
        raise SourceError(f"malformed archive: {what} is not valid JSON after its first '[' ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, list):
        raise SourceError(f"malformed archive: {what} does not hold a list")
    return data


def _archive_time(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y").isoformat()
    except ValueError:
        return value


def archive_post(item: object, where: str) -> RawPost:
    tweet = item.get("tweet", item) if isinstance(item, dict) else None
    if not isinstance(tweet, dict) or not isinstance(tweet.get("full_text", tweet.get("text")), str):
        raise SourceError(f"malformed archive: {where} is not a tweet with full_text")
    tid = tweet.get("id_str") or tweet.get("id")
    if not tid:
        raise SourceError(f"malformed archive: {where} has no id_str")
    text = tweet.get("full_text", tweet.get("text"))
    reply_to = tweet.get("in_reply_to_status_id_str") or tweet.get("in_reply_to_status_id")
    return RawPost(
        id=str(tid),
        text=text,
        created_at=_archive_time(tweet.get("created_at")),
        is_retweet=text.startswith("RT @"),
        is_reply=bool(tweet.get("in_reply_to_status_id_str") or tweet.get("in_reply_to_status_id")),
        is_quote=bool(tweet.get("quoted_status_id_str") or tweet.get("is_quote_status")),
        lang=tweet.get("lang"),
        reply_to_id=str(reply_to) if reply_to else None,
    )


def join_parents(posts: list[RawPost]) -> list[RawPost]:
    """Each reply whose parent is in the same archive (a thread of the person's own) gets the parent's text."""
    texts = {p.id: p.text for p in posts}
    return [replace(p, parent_text=texts[p.reply_to_id]) if p.reply_to_id in texts else p for p in posts]


@dataclass
class _ArchiveFiles:
    """The archive's files as name → text: the tweet files (in part order) and account.js if present."""

    tweets: dict[str, str]
    account: str | None


def _part_key(name: str) -> tuple[int, str]:
    stem = PurePosixPath(name).stem  # tweets, tweets-part1, tweet
    part = stem.rsplit("-part", 1)[1] if "-part" in stem else "0"
    return (int(part) if part.isdigit() else 0, name)


def _is_tweet_file(name: str) -> bool:
    base = PurePosixPath(name).name.lower()
    return base in _TWEET_FILES or (base.startswith(("tweets-part", "tweet-part")) and base.endswith(".js"))


def _read_archive(path: Path) -> _ArchiveFiles:
    if path.is_dir():
        root = path / "data" if (path / "data").is_dir() else path
        files = {p.name: p for p in root.iterdir() if p.is_file()}
        tweets = {n: files[n].read_text(encoding="utf-8") for n in sorted(files, key=_part_key) if _is_tweet_file(n)}
        account = files["account.js"].read_text(encoding="utf-8") if "account.js" in files else None
        return _ArchiveFiles(tweets, account)
    if path.suffix.lower() == ".js":
        sibling = path.parent / "account.js"
        return _ArchiveFiles({path.name: path.read_text(encoding="utf-8")},
                             sibling.read_text(encoding="utf-8") if sibling.exists() else None)
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            tweet_names = sorted((n for n in names if _is_tweet_file(n) and "/deleted" not in n.lower()), key=_part_key)
            account_names = [n for n in names if PurePosixPath(n).name == "account.js"]
            tweets = {n: z.read(n).decode("utf-8") for n in tweet_names}
            account = z.read(account_names[0]).decode("utf-8") if account_names else None
            return _ArchiveFiles(tweets, account)
    except zipfile.BadZipFile:
        raise SourceError(f"malformed archive: {path.name} is not a zip file") from None
    except UnicodeDecodeError:
        raise SourceError(f"malformed archive: {path.name} holds a file that is not UTF-8 text") from None


class ArchiveSource:
    """An X archive export: `.zip`, the unpacked folder, or a bare `tweets.js`/`tweet.js`."""

    def __init__(self, path: Path, handle: str | None = None):
        self.path = path
        self.handle = normalise_handle(handle) if handle else None
        self.label = str(path)

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        return self.read()

    def read(self) -> FetchResult:
        files = _read_archive(self.path)
        if not files.tweets:
            raise SourceError(f"malformed archive: {self.path.name} has no data/tweets.js or data/tweet.js")
        posts: list[RawPost] = []
        for name, text in files.tweets.items():
            for i, item in enumerate(parse_ytd(text, name)):
                posts.append(archive_post(item, f"{name} item {i}"))
        return FetchResult(self._account(files.account), join_parents(posts), cursor=_newest(posts))

    def _account(self, account_js: str | None) -> AccountInfo:
        info: dict = {}
        if account_js is not None:
            items = parse_ytd(account_js, "account.js")
            if items and isinstance(items[0], dict):
                info = items[0].get("account", {}) or {}
        handle = self.handle or normalise_handle(info.get("username", ""))
        if not handle:
            raise ValidationError(f"{self.path.name}: no account.js in the archive; say whose it is with --handle NAME")
        return AccountInfo(
            network="x",
            handle=handle,
            display_name=info.get("accountDisplayName") or handle,
            user_id=info.get("accountId"),
        )


def _newest(posts: list[RawPost]) -> str | None:
    ids = [int(p.id) for p in posts if p.id.isdigit()]
    return str(max(ids)) if ids else None


# -- plain files ----------------------------------------------------------------------------------


def _content_ids(texts: list[str]) -> list[str]:
    """Stable ids for id-less posts: a hash of the text plus its occurrence, so a re-import adds nothing."""
    seen: dict[str, int] = {}
    ids = []
    for t in texts:
        h = hashlib.sha1(t.encode("utf-8")).hexdigest()[:16]
        seen[h] = seen.get(h, 0) + 1
        ids.append(f"{h}-{seen[h]}")
    return ids


class TextFileSource:
    """One post per line; blank lines are skipped."""

    def __init__(self, path: Path, handle: str):
        self.path, self.handle, self.label = path, handle, str(path)

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        return self.read()

    def read(self) -> FetchResult:
        try:
            lines = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except UnicodeDecodeError:
            raise SourceError(f"{self.path.name} is not UTF-8 text") from None
        posts = [RawPost(id=i, text=t) for i, t in zip(_content_ids(lines), lines)]
        return FetchResult(AccountInfo("file", self.handle, self.handle), posts)


class JsonlFileSource(TextFileSource):
    """One JSON object a line with a "text" field; optional "id", "created_at" and "parent" (the text of the
    message this post answers: trained on as the reply's context)."""

    def read(self) -> FetchResult:
        rows = []
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise SourceError(f"{self.path.name} is not UTF-8 text") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{self.path.name} line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise SourceError(f'{self.path.name} line {n}: expected an object with a "text" string')
            rows.append(obj)
        ids = _content_ids([r["text"] for r in rows])
        posts = [
            RawPost(id=str(r.get("id") or auto), text=r["text"], created_at=r.get("created_at"),
                    is_reply=isinstance(r.get("parent"), str),
                    parent_text=r["parent"] if isinstance(r.get("parent"), str) else None)
            for r, auto in zip(rows, ids)
        ]
        return FetchResult(AccountInfo("file", self.handle, self.handle), posts)
