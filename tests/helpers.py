"""Builders for test inputs: X-archive-shaped zips and folders written on the fly."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path


def tweet(i: int, text: str, **extra) -> dict:
    return {"tweet": {"id_str": str(1000 + i), "full_text": text, "created_at": "Sat Dec 06 18:20:30 +0000 2025",
                      "lang": "en", "retweeted": False, **extra}}


def ytd(var: str, items: list) -> str:
    return f"window.YTD.{var}.part0 = " + json.dumps(items)


def account_js(username: str, name: str) -> str:
    return ytd("account", [{"account": {"username": username, "accountDisplayName": name, "accountId": "42"}}])


def write_archive_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def many_posts(n: int, start: int = 0) -> list[dict]:
    return [tweet(start + i, f"post number {start + i} says something rather plain") for i in range(n)]
