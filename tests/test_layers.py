"""The shape of the code, held by a test: the faces (bot/discord, bot/cli) talk only to the service API; the
core never imports discord; no module imports another module's private names; the packages have no cycle."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "bot"
FACES = ("bot.discord", "bot.cli")
# what a face may import from the rest of bot/: the service API and its nouns, the errors, the settings; the
# composition root and process-level operations (logging, health, backups) for the CLI's run/ops commands
# ... and the redactor, so that what a face shows (an error, a traceback) holds no secret (bot/redaction.py: a leaf)
FACE_MAY_IMPORT = {"bot.service", "bot.errors", "bot.config", "bot.app", "bot.ops", "bot.naming", "bot.samples",
                   "bot.redaction"}
# the CLI also starts and syncs the Discord face (`mimicbot run`, `mimicbot sync-commands`)
CLI_MAY_IMPORT = {"bot.discord.face", "bot.discord.options"}
# a Discord posting target implements the posting interface
FACE_EDGES = {("bot.discord.target", "bot.posting.base")}
# the one edge from the core to the Discord face: a `discord:ID` posting target is built from its code, lazily
CORE_TO_DISCORD = {("bot.posting.targets", "bot.discord.target")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import in the file, lazy ones included (each file read
    once a run: four tests ask)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            if not node.module:  # `from . import x`: x is a module of that package
                found += [(f"{target}.{n}", [], node.lineno) for n in names]
            else:
                found.append((target, names, node.lineno))
    return found


MODULES = sorted(ROOT.rglob("*.py"))


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", [p for p in MODULES if any(within(module_name(p), f) for f in FACES)],
                         ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_faces_import_only_the_service_api(path):
    me = module_name(path)
    face = next(f for f in FACES if within(me, f))
    behind = [f"{target} (line {line})" for target, _, line in imports(path)
              if within(target, "bot") and not within(target, face)
              and not any(within(target, allowed) for allowed in FACE_MAY_IMPORT)
              and not (face == "bot.cli" and target in CLI_MAY_IMPORT) and (me, target) not in FACE_EDGES]
    assert not behind, f"{me} reaches behind the service: {behind}"


@pytest.mark.parametrize("path", [p for p in MODULES if not any(within(module_name(p), f) for f in FACES)
                                  and module_name(p) != "bot.app"],
                         ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_the_core_never_imports_discord(path):
    me = module_name(path)
    assert not [t for t, _, _ in imports(path) if within(t, "discord")
                or (within(t, "bot.discord") and (me, t) not in CORE_TO_DISCORD)]


def test_no_private_name_is_imported_across_modules():
    private = [f"{module_name(p)}:{line} imports {n} from {target}" for p in MODULES
               for target, names, line in imports(p) if within(target, "bot")
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private


def test_the_packages_of_bot_import_each_other_without_a_cycle():
    """Module-level imports only (a lazy import inside a function is how a face-free core reaches an
    optional part); packages are bot's first-level names."""
    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for path in MODULES:
        me = package(module_name(path))
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        top_lines = {n.lineno for n in top}
        for target, _, line in imports(path):
            if line in top_lines and within(target, "bot") and package(target) != me and target != "bot":
                graph.setdefault(me, set()).add(package(target))

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return trail + [start]
                if nxt not in trail:
                    stack.append((nxt, trail + [nxt]))
        return None

    cycles = [c for p in graph if (c := cycle_from(p))]
    assert not cycles, cycles
