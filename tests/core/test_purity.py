"""core/ is a pure function of its log: it imports only pure modules, and nothing else in
the project reaches into it except through its public exports."""

from __future__ import annotations

import ast
from pathlib import Path

import evx.core

CORE = Path(evx.core.__file__).parent
ROOT = CORE.parent

# The standard library's pure modules that core/ may use, msgpack, and core itself.
ALLOWED = {
    "__future__",
    "collections",
    "collections.abc",
    "dataclasses",
    "enum",
    "hashlib",
    "heapq",
    "operator",
    "re",
    "typing",
    "msgpack",
}
FORBIDDEN_NAMES = {"float", "hash", "id", "random", "time", "open", "input", "print", "eval"}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: core importing itself
                continue
            found.append((node.module or "", node.lineno))
    return found


def test_core_imports_only_pure_modules() -> None:
    bad = [
        f"{path.name}:{line} imports {name}"
        for path in sorted(CORE.glob("*.py"))
        for name, line in _imports(path)
        if name not in ALLOWED
    ]
    assert not bad, bad


def test_core_calls_no_clock_randomness_float_or_io() -> None:
    bad = []
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in FORBIDDEN_NAMES
            ):
                bad.append(f"{path.name}:{node.lineno} calls {node.func.id}()")
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                bad.append(f"{path.name}:{node.lineno} has the float {node.value}")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                bad.append(f"{path.name}:{node.lineno} divides with '/'")
    assert not bad, bad


def test_other_packages_use_only_the_public_api_of_core() -> None:
    """Outside core/, `evx.core` is imported only from its package, never a module."""
    bad = []
    for package in ("replication", "snapshots", "gateway", "tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, line in _imports(path):
                if name.startswith("evx.core."):
                    bad.append(f"{package}/{path.name}:{line} imports {name}")
    assert not bad, bad


def test_the_purity_check_can_fail(tmp_path: Path) -> None:
    impure = tmp_path / "impure.py"
    impure.write_text("import time\nfrom os import environ\nx = 1 / 3\ny = float(2)\n")
    assert {name for name, _ in _imports(impure)} == {"time", "os"}
    tree = ast.parse(impure.read_text())
    assert any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) for n in ast.walk(tree))
