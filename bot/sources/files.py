"""Sources on disk: a person's X archive (zip, folder or bare tweets.js) and plain .txt / .jsonl files.

Archives are parsed as data, never evaluated: the text after `window.YTD.<name>.partN =` is JSON.

Everything read here is untrusted and bounded (ImportLimits): the text read from one import (after
decompression), the entries of a zip, the inflation ratio of a member, one post's length. A zip member named
with `..` or an absolute path, an encrypted member, a compression method Python cannot read, text that is not
UTF-8, JSON of the wrong shape: each is refused with one MalformedImport line naming the file and the place.
Nothing is stored until the whole import has been read (the service stores after reading).

Long posts: X keeps the whole text of a post over 280 characters in `data/note-tweet.js`; `tweets.js` holds
the first ~275 characters and a `…`. A note is joined to its post by the post id when the note names one
(`tweetId`, or `lifecycle.initialTweetId`); archives seen so far name none, so otherwise a note joins the post
created in the same second (±1 s) whose truncated text is the start of the note's text.
Edited posts: every version is in `tweets.js`, tied by `edit_info`; only the last version of a chain is kept.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

from ..errors import MalformedImport, SourceError, ValidationError
from ..naming import normalise_handle
from .base import AccountInfo, FetchResult, RawPost

_TWEET_FILES = ("tweets.js", "tweet.js")
_NOTE_FILES = ("note-tweet.js",)
_MB = 1 << 20


@dataclass(frozen=True)
class ImportLimits:
    """What one import may hold. A real archive is far inside these; a damaged or hostile one is not."""

    max_bytes: int = 512 * _MB  # text read from one import, after decompression (media files are never read)
    max_members: int = 250_000  # entries in one zip
    max_ratio: int = 100  # a member inflating more than this per compressed byte (past ratio_floor) is a bomb
    ratio_floor: int = 1 * _MB
    max_post_chars: int = 50_000  # one post (X's longest posts are 25,000)
    max_field_chars: int = 1_000  # a name, id or date


LIMITS = ImportLimits()
_READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def open_file_source(path: Path, handle: str | None, limits: ImportLimits = LIMITS):
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    if not path.is_dir() and not path.is_file():
        raise MalformedImport(f"{path} is not a regular file (a pipe or a device is never read)")
    name = path.name.lower()
    if name.endswith(".txt"):
        return TextFileSource(path, _need_handle(path, handle), limits)
    if name.endswith(".jsonl"):
        return JsonlFileSource(path, _need_handle(path, handle), limits)
    if path.is_dir() or name.endswith((".zip", ".js")):
        return ArchiveSource(path, handle, limits)
    raise ValidationError(f"{path}: not a .zip/.js X archive, an archive folder, a .txt or a .jsonl file")


def _need_handle(path: Path, handle: str | None) -> str:
    from ..naming import file_handle

    if not handle or not normalise_handle(handle):
        raise ValidationError(f"{path.name}: a .txt or .jsonl source needs --handle NAME (whose posts these are)")
    return file_handle(handle)


# -- bounded, checked reading -----------------------------------------------------------------------------------


def _show(text: str, limit: int = 80) -> str:
    """A name from the input, fit for a one-line message: control characters escaped, length bounded."""
    shown = json.dumps(text, ensure_ascii=False)[1:-1]
    return shown if len(shown) <= limit else shown[:limit] + "…"


def _size(n: int) -> str:
    return f"{n / _MB:,.0f} MB" if n >= _MB else f"{n:,} bytes"


class _Budget:
    """The bytes one import may still read."""

    def __init__(self, label: str, limits: ImportLimits):
        self.label, self.limits, self.left = label, limits, limits.max_bytes

    def refuse(self, what: str, declared: int | None = None) -> MalformedImport:
        where = self.label if what == self.label else f"{self.label}: {what}"
        size = f"declares {_size(declared)} of text, more" if declared else "holds more text"
        return MalformedImport(f"{where} {size} than an import reads ({_size(self.limits.max_bytes)} in all; "
                               "media files are never read)")

    def take(self, n: int, what: str) -> None:
        self.left -= n
        if self.left < 0:
            raise self.refuse(what)


def _read_file(path: Path, budget: _Budget, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(budget.left + 1)
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    budget.take(len(data), what)
    return data


def _decode(data: bytes, what: str) -> str:
    """UTF-8 text (a BOM is dropped), or one line saying where it is not."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise MalformedImport(f"{what} is UTF-16 text; save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise MalformedImport(f"{what} holds a NUL byte at byte {nul:,} (line {line}): not UTF-8 text "
                              "(UTF-16 or binary?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise MalformedImport(f"{what} is not UTF-8 text: byte {e.start:,} (line {line}, column {column}) "
                              f"cannot be decoded ({e.reason})") from None


def _loads(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MalformedImport(f"{what} is not valid JSON ({e.msg}, line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise MalformedImport(f"{what} nests JSON too deeply to be a post") from None
    except ValueError as e:  # an integer of thousands of digits
        raise MalformedImport(f"{what} is not valid JSON ({_show(str(e), 60)})") from None


_YTD_PREFIX = re.compile(r"\s*(?:window\.YTD\.[A-Za-z0-9_]+\.part\d+\s*=\s*)?(?=\[)")


def parse_ytd(text: str, what: str) -> list:
    """`window.YTD.x.part0 = [...]` (or a bare `[...]`) → the list. MalformedImport for any other shape."""
    m = _YTD_PREFIX.match(text)
    if not m:
        raise MalformedImport(f"malformed archive: {what} has no JSON array after 'window.YTD.<name>.partN ='")
    data = _loads(text[m.end():], f"malformed archive: {what}")
    if not isinstance(data, list):  # pragma: no cover - the prefix only matches before a '['
        raise MalformedImport(f"malformed archive: {what} does not hold a list")
    return data


def _unsafe_member(name: str) -> bool:
    parts = re.split(r"[\\/]", name)
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in parts


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    """One zip member's bytes, refused as it inflates past the budget or the bomb ratio."""
    what = f"{budget.label}: {_show(info.filename)}"
    if info.flag_bits & 0x1:
        raise MalformedImport(f"{what} is encrypted; export the archive again without a password")
    if info.compress_type not in _READABLE_METHODS:
        raise MalformedImport(f"{what} uses zip compression method {info.compress_type}, which mimicbot cannot read; "
                              "re-zip it with ordinary (deflate) compression")
    if info.file_size > budget.left:
        raise budget.refuse(_show(info.filename), info.file_size)
    limits, chunks, size = budget.limits, [], 0
    try:
        with z.open(info) as f:
            while chunk := f.read(_MB):
                size += len(chunk)
                budget.take(len(chunk), _show(info.filename))
                if size > limits.ratio_floor and size > limits.max_ratio * max(info.compress_size, 1):
                    raise MalformedImport(f"{what} inflates over {limits.max_ratio}x its compressed size: "
                                          "a zip bomb, not an archive")
                chunks.append(chunk)
        if size != info.file_size:
            raise MalformedImport(f"{what} is damaged: {size:,} bytes where the zip directory says "
                                  f"{info.file_size:,}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        # ValueError covers zlib.error's siblings from bz2/lzma; OSError an invalid bz2 stream
        raise MalformedImport(f"{what} is damaged ({_show(str(e), 80) or type(e).__name__})") from None
    except NotImplementedError:  # pragma: no cover - methods are checked above
        raise MalformedImport(f"{what} uses a zip feature mimicbot cannot read") from None
    except RuntimeError as e:  # zipfile: an encrypted member
        raise MalformedImport(f"{what} cannot be read ({_show(str(e), 80)})") from None
    return b"".join(chunks)


# -- X archive --------------------------------------------------------------------------------------------------


_X_TIME = re.compile(r"[A-Z][a-z]{2} ([A-Z][a-z]{2}) (\d{2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2}) (\d{4})")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


def _parse_time(value: str) -> datetime | None:
    """X's `Sat Dec 06 18:20:30 +0000 2025` (read by hand: strptime is most of an archive's parse time), or
    ISO 8601; None for anything else."""
    m = _X_TIME.fullmatch(value)
    try:
        if m:
            month, day, hh, mm, ss, sign, tzh, tzm, year = m.groups()
            offset = timedelta(hours=int(tzh), minutes=int(tzm)) * (-1 if sign == "-" else 1)
            return datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset))
        t = datetime.fromisoformat(value)
    except (KeyError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _json_type(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__  # pragma: no cover - json.loads makes nothing else


class _Fields:
    """Typed reads of one JSON object from the input, each failure a MalformedImport naming the field."""

    def __init__(self, obj: dict, where: str, limits: ImportLimits):
        self.obj, self.where, self.limits = obj, where, limits

    def fail(self, key: str, expected: str) -> MalformedImport:
        return MalformedImport(f"{self.where}: {key} is {_json_type(self.obj.get(key))}, expected {expected}")

    def text(self, key: str, *, required: bool = False, limit: int | None = None) -> str | None:
        value = self.obj.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "a string")
        limit = limit or self.limits.max_field_chars
        if len(value) > limit:
            raise MalformedImport(f"{self.where}: {key} is {len(value):,} characters long; at most {limit:,} are read")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise MalformedImport(f"{self.where}: {key} holds a lone surrogate (\\u{ord(value[e.start]):04x}) "
                                  f"at character {e.start:,}: not valid Unicode") from None
        return value

    def post_text(self, key: str) -> str:
        return self.text(key, required=True, limit=self.limits.max_post_chars)  # type: ignore[return-value]

    def ident(self, *keys: str, required: bool = False) -> str | None:
        """A post or account id: digits (as X's archives write them) or a JSON integer."""
        for key in keys:
            value = self.obj.get(key)
            if value is None or (value == "" and not required):
                continue
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
                return str(value)
            if isinstance(value, str) and re.fullmatch(r"\d{1,20}", value):
                return value
            raise MalformedImport(f"{self.where}: {key} is {_show(repr(value), 40)}, expected an id of digits")
        if required:
            raise MalformedImport(f"{self.where}: no {' or '.join(keys)}")
        return None

    def time(self, key: str) -> datetime | None:
        value = self.text(key)
        if value is None:
            return None
        parsed = _parse_time(value)
        if parsed is None:
            raise MalformedImport(f"{self.where}: {key} '{_show(value, 40)}' is not a date "
                                  "(expected 'Sat Dec 06 18:20:30 +0000 2025' or ISO 8601)")
        return parsed

    def flag(self, key: str) -> bool:
        value = self.obj.get(key)
        if value is None or isinstance(value, bool):
            return bool(value)
        if value in ("true", "false"):
            return value == "true"
        raise self.fail(key, "true or false")

    def object(self, key: str) -> _Fields | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, "an object")
        return _Fields(value, f"{self.where}: {key}", self.limits)

    def ids(self, key: str) -> list[str]:
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > 100:
            raise self.fail(key, "a list of ids")
        return [_Fields({key: v}, self.where, self.limits).ident(key, required=True) for v in value]  # type: ignore[misc]


def _as_object(item: object, where: str, wrapper: str, limits: ImportLimits) -> _Fields:
    inner = item.get(wrapper, item) if isinstance(item, dict) else item
    if not isinstance(inner, dict):
        raise MalformedImport(f"malformed archive: {where} is {_json_type(inner)}, expected an object "
                              f'{{"{wrapper}": {{...}}}}')
    return _Fields(inner, f"malformed archive: {where}", limits)


@dataclass
class _ArchivePost:
    post: RawPost
    created: datetime | None
    chain: str  # the id of the first version of an edited post, else the post's own id


def archive_post(item: object, where: str, limits: ImportLimits = LIMITS) -> _ArchivePost:
    tweet = _as_object(item, where, "tweet", limits)
    key = "full_text" if "full_text" in tweet.obj else "text"
    if key not in tweet.obj:
        raise MalformedImport(f"{tweet.where} is not a tweet with full_text")
    text = tweet.post_text(key)
    tid = tweet.ident("id_str", "id", required=True)
    created = tweet.time("created_at")
    lang = tweet.text("lang")
    reply = tweet.ident("in_reply_to_status_id_str", "in_reply_to_status_id")
    quote = tweet.ident("quoted_status_id_str")
    chain = tid
    edit = tweet.object("edit_info")
    if edit is not None:
        initial, later = edit.object("initial"), edit.object("edit")
        if later is not None:
            control = later.object("editControlInitial")
            versions = control.ids("editTweetIds") if control else []
            chain = later.ident("initialTweetId") or (versions[0] if versions else tid)
        elif initial is not None:
            versions = initial.ids("editTweetIds")
            chain = versions[0] if versions else tid
    post = RawPost(
        id=tid, text=text,
        created_at=created.isoformat() if created else None,
        is_retweet=text.startswith("RT @"),
        is_reply=bool(reply),
        is_quote=bool(quote) or tweet.flag("is_quote_status"),
        lang=lang,
        reply_to_id=reply or None,
    )
    return _ArchivePost(post, created, chain)  # type: ignore[arg-type]


@dataclass
class _Note:
    text: str
    created: datetime | None
    tweet_id: str | None


def _note(item: object, where: str, limits: ImportLimits) -> _Note:
    note = _as_object(item, where, "noteTweet", limits)
    core = note.object("core")
    if core is None:
        raise MalformedImport(f"{note.where} has no core text")
    lifecycle = note.object("lifecycle")
    tweet_id = note.ident("tweetId") or (lifecycle.ident("initialTweetId") if lifecycle else None)
    return _Note(core.post_text("text"), note.time("createdAt"), tweet_id)


_TRAILING_LINKS = re.compile(r"(?:\s*https?://t\.co/\w+)+\s*$")


def _comparable(text: str) -> str:
    return " ".join(html.unescape(text).split())


def _join_notes(posts: list[_ArchivePost], notes: list[_Note]) -> int:
    """Give each truncated post the whole text of its note; returns how many were joined."""
    by_id = {p.post.id: p for p in posts}
    by_second: dict[int, list[_ArchivePost]] = {}
    for p in posts:
        if p.created is not None:
            by_second.setdefault(int(p.created.timestamp()), []).append(p)
    joined = 0
    for note in notes:
        target = by_id.get(note.tweet_id) if note.tweet_id else None
        if target is None and note.created is not None:
            whole = _comparable(note.text)
            second = int(note.created.timestamp())
            for p in (p for s in (second, second - 1, second + 1) for p in by_second.get(s, [])):
                shown = _TRAILING_LINKS.sub("", p.post.text)
                truncated = shown.rstrip().endswith("…")
                prefix = _comparable(shown.rstrip().removesuffix("…"))
                if prefix and (whole == prefix or (truncated and whole.startswith(prefix))):
                    target = p
                    break
        if target is not None and target.post.text != note.text:
            target.post = replace(target.post, text=note.text)
            joined += 1
    return joined


def _last_versions(posts: list[_ArchivePost]) -> list[_ArchivePost]:
    """One post per edit chain: its newest version (the highest id)."""
    newest: dict[str, _ArchivePost] = {}
    for p in posts:
        kept = newest.get(p.chain)
        if kept is None or int(p.post.id) > int(kept.post.id):
            newest[p.chain] = p
    keep = {id(p) for p in newest.values()}
    return [p for p in posts if id(p) in keep]


def join_parents(posts: list[RawPost]) -> list[RawPost]:
    """Each reply whose parent is in the same archive (a thread of the person's own) gets the parent's text."""
    texts = {p.id: p.text for p in posts}
    return [replace(p, parent_text=texts[p.reply_to_id]) if p.reply_to_id in texts else p for p in posts]


@dataclass
class _ArchiveFiles:
    """The archive's files as name → text: the tweet files and note files (in part order), account.js."""

    tweets: dict[str, str]
    account: str | None
    notes: dict[str, str] = field(default_factory=dict)


def _part_key(name: str) -> tuple[int, str]:
    stem = PurePosixPath(name).stem  # tweets, tweets-part1, tweet
    part = stem.rsplit("-part", 1)[1] if "-part" in stem else "0"
    return (int(part) if part.isdigit() and len(part) < 6 else 0, name)


def _is_tweet_file(name: str) -> bool:
    base = PurePosixPath(name.replace("\\", "/")).name.lower()
    return base in _TWEET_FILES or (base.startswith(("tweets-part", "tweet-part")) and base.endswith(".js"))


def _is_note_file(name: str) -> bool:
    base = PurePosixPath(name.replace("\\", "/")).name.lower()
    return base in _NOTE_FILES or (base.startswith("note-tweet-part") and base.endswith(".js"))


def _is_account_file(name: str) -> bool:
    return PurePosixPath(name.replace("\\", "/")).name.lower() == "account.js"


def _read_folder(path: Path, budget: _Budget) -> _ArchiveFiles:
    root = path / "data" if (path / "data").is_dir() else path
    files = {}
    for i, p in enumerate(root.iterdir()):
        if i >= budget.limits.max_members:
            raise MalformedImport(f"{budget.label}: over {budget.limits.max_members:,} files; not an X archive")
        if p.is_file():
            files[p.name] = p

    def read(names):
        return {n: _decode(_read_file(files[n], budget, n), f"{budget.label}: {n}") for n in sorted(names, key=_part_key)}

    account = [n for n in files if _is_account_file(n)]
    return _ArchiveFiles(read(n for n in files if _is_tweet_file(n)), read(account[:1]).get(account[0]) if account else None,
                         read(n for n in files if _is_note_file(n)))


def _read_bare(path: Path, budget: _Budget) -> _ArchiveFiles:
    def read(p: Path) -> str:
        return _decode(_read_file(p, budget, p.name), p.name)

    account, notes = path.parent / "account.js", path.parent / "note-tweet.js"
    return _ArchiveFiles({path.name: read(path)}, read(account) if account.is_file() and account != path else None,
                         {notes.name: read(notes)} if notes.is_file() and notes != path else {})


def _read_zip(path: Path, budget: _Budget) -> _ArchiveFiles:
    label, limits = budget.label, budget.limits
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise MalformedImport(f"malformed archive: {label} is not a zip file ({_show(str(e), 60)})") from None
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    with z:
        infos = z.infolist()
        if len(infos) > limits.max_members:
            raise MalformedImport(f"{label}: {len(infos):,} entries, over the {limits.max_members:,} an import reads")
        for info in infos:
            if _unsafe_member(info.filename):
                raise MalformedImport(f"{label}: entry {_show(info.filename)!s} points outside the archive "
                                      "('..' or an absolute path); refused")
        twice = [n for n, c in Counter(i.filename for i in infos).items() if c > 1]
        if twice:
            raise MalformedImport(f"{label}: holds {_show(twice[0])} twice; which one is the archive's is unknown")
        files = [i for i in infos if not i.is_dir()]

        def read(chosen):
            out = {}
            for info in sorted(chosen, key=lambda i: _part_key(i.filename)):
                out[info.filename] = _decode(_read_member(z, info, budget), f"{label}: {_show(info.filename)}")
            return out

        tweets = read(i for i in files if _is_tweet_file(i.filename) and "/deleted" not in i.filename.lower())
        accounts = [i for i in files if _is_account_file(i.filename)]
        account = next(iter(read(accounts[:1]).values()), None)
        notes = read(i for i in files if _is_note_file(i.filename))
        return _ArchiveFiles(tweets, account, notes)


class ArchiveSource:
    """An X archive export: `.zip`, the unpacked folder, or a bare `tweets.js`/`tweet.js`."""

    def __init__(self, path: Path, handle: str | None = None, limits: ImportLimits = LIMITS):
        from ..naming import file_handle

        self.path = path
        self.handle = file_handle(handle) if handle else None
        self.label = str(path)
        self.limits = limits
        self.notes_joined = 0
        self.edits_dropped = 0

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        return self.read()

    def read(self) -> FetchResult:
        budget = _Budget(self.path.name, self.limits)
        if self.path.is_dir():
            files = _read_folder(self.path, budget)
        elif self.path.suffix.lower() == ".js":
            files = _read_bare(self.path, budget)
        else:
            files = _read_zip(self.path, budget)
        if not files.tweets:
            raise MalformedImport(f"malformed archive: {self.path.name} has no data/tweets.js or data/tweet.js")
        posts: list[_ArchivePost] = []
        for name, text in files.tweets.items():
            shown = _show(name)
            for i, item in enumerate(parse_ytd(text, shown)):
                posts.append(archive_post(item, f"{shown} item {i}", self.limits))
        if not posts:
            raise MalformedImport(f"{self.path.name} holds no posts (its tweet files are empty)")
        notes = [_note(item, f"{_show(name)} item {i}", self.limits)
                 for name, text in files.notes.items() for i, item in enumerate(parse_ytd(text, _show(name)))]
        self.notes_joined = _join_notes(posts, notes)
        kept = _last_versions(posts)
        self.edits_dropped = len(posts) - len(kept)
        raw = join_parents([p.post for p in kept])
        return FetchResult(self._account(files.account), raw, cursor=_newest(raw))

    def _account(self, account_js: str | None) -> AccountInfo:
        from ..naming import file_handle

        info = None
        if account_js is not None:
            items = parse_ytd(account_js, "account.js")
            if items:
                info = _as_object(items[0], "account.js item 0", "account", self.limits)
        username = info.text("username") if info else None
        if self.handle:
            handle = self.handle
        elif username:
            try:
                handle = file_handle(username)
            except ValidationError:
                raise MalformedImport(f"malformed archive: account.js username {_show(username, 40)} is not an X "
                                      "handle") from None
        else:
            raise ValidationError(f"{self.path.name}: no account.js in the archive; say whose it is with --handle NAME")
        display = (info.text("accountDisplayName") if info else None) or handle
        return AccountInfo(network="x", handle=handle, display_name=display,
                           user_id=info.ident("accountId") if info else None)


def _newest(posts: list[RawPost]) -> str | None:
    ids = [int(p.id) for p in posts if p.id.isdigit()]
    return str(max(ids)) if ids else None


# -- plain files ----------------------------------------------------------------------------------------------


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

    def __init__(self, path: Path, handle: str, limits: ImportLimits = LIMITS):
        self.path, self.handle, self.label, self.limits = path, handle, str(path), limits

    async def fetch(self, since_id: str | None = None) -> FetchResult:
        return self.read()

    def _lines(self) -> list[tuple[int, str]]:
        data = _read_file(self.path, _Budget(self.path.name, self.limits), self.path.name)
        lines = [(n, ln) for n, ln in enumerate(_decode(data, self.path.name).splitlines(), 1) if ln.strip()]
        if not lines:
            raise MalformedImport(f"{self.path.name} holds no posts (it is empty)")
        return lines

    def _post_text(self, n: int, text: str) -> str:
        if len(text) > self.limits.max_post_chars:
            raise MalformedImport(f"{self.path.name} line {n}: a post of {len(text):,} characters; at most "
                                  f"{self.limits.max_post_chars:,} are read")
        return text

    def read(self) -> FetchResult:
        lines = [self._post_text(n, t) for n, t in self._lines()]
        posts = [RawPost(id=i, text=t) for i, t in zip(_content_ids(lines), lines)]
        return FetchResult(AccountInfo("file", self.handle, self.handle), posts)


class JsonlFileSource(TextFileSource):
    """One JSON object a line with a "text" field; optional "id" (a string or integer), "created_at" and "parent"
    (the text of the message this post answers: trained on as the reply's context)."""

    def read(self) -> FetchResult:
        rows = []
        for n, line in self._lines():
            where = f"{self.path.name} line {n}"
            obj = _loads(line, where)
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise MalformedImport(f'{where}: expected an object with a "text" string')
            row = _Fields(obj, where, self.limits)
            ident = obj.get("id")
            if ident is not None and not (isinstance(ident, str | int) and not isinstance(ident, bool)):
                raise row.fail("id", "a string or an integer")
            created = row.time("created_at")
            parent = row.post_text("parent") if obj.get("parent") is not None else None
            rows.append((row.post_text("text"), row.text("id") if isinstance(ident, str) else ident,
                         created.isoformat() if created else None, parent))
        ids = _content_ids([text for text, _, _, _ in rows])
        posts = [RawPost(id=str(ident) if ident not in (None, "") else auto, text=text, created_at=created,
                         is_reply=parent is not None, parent_text=parent)
                 for (text, ident, created, parent), auto in zip(rows, ids)]
        return FetchResult(AccountInfo("file", self.handle, self.handle), posts)
