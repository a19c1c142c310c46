"""The layering rule (docs/architecture.md), checked on the import statements themselves.

- ``shared`` never imports Flask, torch or our ``web``/``worker`` packages;
- ``shared.contracts`` imports only pydantic and the standard library (and itself);
- ``web`` never imports torch or ``worker``;
- ``worker/diffusion`` (the ML core) imports no Celery, Flask, SQL or queue code, and from
  ``shared`` only ``shared.contracts``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement in `path`, at any depth (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "shared":  # `from shared import jobs` names shared.jobs
                names.update(f"shared.{alias.name}" for alias in node.names)
    return names


def violations(package: str, allowed) -> list[str]:
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        if "node_modules" in path.parts:
            continue
        for name in sorted(imported_modules(path)):
            if not allowed(name):
                found.append(f"{path.relative_to(REPO)} imports {name}")
    return found


def top(name: str) -> str:
    return name.split(".")[0]


STDLIB = set(sys.stdlib_module_names)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("shared", {"flask", "torch", "transformers", "web", "worker"}),
        ("web", {"torch", "transformers", "accelerate", "datasets", "worker"}),
    ],
)
def test_package_never_imports(package: str, forbidden: set[str]) -> None:
    assert violations(package, lambda name: top(name) not in forbidden) == []


def test_contracts_are_pure() -> None:
    def allowed(name: str) -> bool:
        return top(name) in STDLIB or top(name) == "pydantic" or name.startswith("shared.contracts")

    assert violations("shared/contracts", allowed) == []


def test_ml_core_depends_on_contracts_only() -> None:
    forbidden_tops = {"celery", "kombu", "redis", "flask", "sqlalchemy", "alembic", "web"}

    def allowed(name: str) -> bool:
        if top(name) in forbidden_tops:
            return False
        if top(name) == "shared":
            return name.startswith("shared.contracts")
        if top(name) == "worker":
            return name.startswith("worker.diffusion")
        return True

    assert violations("worker/diffusion", allowed) == []
