"""The model folder's one owner (bot/modelfolder.py) and atomic file writes (bot/atomic.py), on a real file
system: a reader finds the old model or the new one, never neither, never half of one."""

from __future__ import annotations

import os
import threading

import pytest

from bot.atomic import atomic_path, write_atomic
from bot.modelfolder import CONFIG_FILE, install, is_model, remove, stamp


def model(folder, version: str):
    folder.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(version)
    (folder / "weights").write_text(version * 100)
    return folder


def test_install_replaces_a_model_and_restores_it_when_the_new_one_is_missing(tmp_path):
    final = model(tmp_path / "m", "old")
    before = stamp(final)
    assert install(model(tmp_path / ".work-1", "new"), final) == final
    assert (final / "weights").read_text() == "new" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # the old one is gone, no scratch left
    assert stamp(final) != before and is_model(final)

    with pytest.raises(OSError):
        install(tmp_path / ".work-missing", final)
    assert (final / "weights").read_text() == "new" * 100  # untouched when the new one could not be moved in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]

    fresh = install(model(tmp_path / ".work-2", "first"), tmp_path / "other")  # nothing there before
    assert (fresh / CONFIG_FILE).read_text() == "first"


def test_a_reader_never_finds_the_model_missing_while_it_is_replaced(tmp_path):
    final = model(tmp_path / "m", "v0")
    missing = []
    done = threading.Event()

    def read():
        while not done.is_set():
            try:
                (final / CONFIG_FILE).read_text()
            except FileNotFoundError:
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 200):
            install(model(tmp_path / f".work-{i}", f"v{i}"), final)
    finally:
        done.set()
        reader.join()
    assert (final / CONFIG_FILE).read_text() == "v199"
    assert missing == []  # renameat2(RENAME_EXCHANGE): no moment without a model


def test_remove_hides_the_model_first(tmp_path):
    final = model(tmp_path / "m", "v")
    remove(final)
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        remove(final)
    assert stamp(final) is None and not is_model(final)
    assert not is_model(model(tmp_path / ".work", "scratch"))  # dot folders are never models


def test_atomic_writes_leave_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "a.json"
    write_atomic(path, "first")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the disk filled up")
    assert path.read_text() == "first" and os.listdir(tmp_path) == ["a.json"]
    write_atomic(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes" and os.listdir(tmp_path) == ["a.json"]
