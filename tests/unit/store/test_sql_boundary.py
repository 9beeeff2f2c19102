"""SQL lives in rootless/store only: no other module reaches for the store's connection, runs a
statement or imports the database module. (Tests may.)"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "rootless"
SQL_CALLS = {"execute", "executemany", "executescript"}


def _offences(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "db":
            out.append(f"line {node.lineno}: .db")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            out.append(f"line {node.lineno}: .{node.func.attr}(")
        elif isinstance(node, ast.ImportFrom) and (
                node.module == "rootless.store.db"
                or (node.module == "rootless.store" and any(a.name == "db" for a in node.names))):
            out.append(f"line {node.lineno}: imports rootless.store.db")
        elif isinstance(node, ast.Import) and any(a.name == "rootless.store.db" for a in node.names):
            out.append(f"line {node.lineno}: imports rootless.store.db")
    return out


def test_no_module_outside_the_store_touches_its_database() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "store"):
            continue
        offences = _offences(ast.parse(path.read_text(), str(path)))
        if offences:
            found[str(path.relative_to(PACKAGE.parent))] = offences
    assert found == {}, "SQL belongs in a Store method (rootless/store/)"


def test_the_check_sees_each_way_in() -> None:
    code = ("from rootless.store import db\nimport rootless.store.db\nfrom rootless.store.db import transaction\n"
            "store.db\nconn.execute('SELECT 1')\nconn.executemany('', [])\n")
    assert len(_offences(ast.parse(code))) == 6
