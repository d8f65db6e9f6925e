"""The structure rule: roles meet only through queues, and common/ knows no role. Every module of a
role package (ingest, detector_worker, ocr_worker, redactor_worker, sighting_worker, alert_worker) may
import common and itself but no other role, nor alpr (the commands, which wire every role together);
common may import no role and not alpr. Imports are read with `ast`, at any depth (inside functions
too), as are `importlib.import_module("...")` and `__import__("...")` calls with a literal name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

ROLES = frozenset({"ingest", "detector_worker", "ocr_worker", "redactor_worker", "sighting_worker", "alert_worker"})
"""The role packages: each runs as its own pool and talks to the others only through queues."""

CHECKED = (*sorted(ROLES), "common")
"""The packages whose imports are checked."""


def forbidden_for(package: str) -> frozenset[str]:
    """The top-level packages `package` must not import."""
    if package == "common":
        return ROLES | {"alpr"}
    return (ROLES - {package}) | {"alpr"}


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the tree, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def import_violations(package: str, source: str, filename: str = "<string>") -> list[str]:
    """Each import in `source` (a module of `package`) that breaks the rule, as 'file:line: module'.
    Relative imports stay inside the package and are always allowed."""
    forbidden = forbidden_for(package)
    tree = ast.parse(source, filename=filename)
    return [
        f"{filename}:{line}: {package} imports {module}"
        for line, module in _imported_names(tree)
        if module.split(".")[0] in forbidden
    ]


def package_files(package: str) -> list[Path]:
    """Every .py file of the package, subfolders included."""
    return sorted((REPO / package).rglob("*.py"))


def test_checker_reports_a_role_importing_another_role():
    source = "from __future__ import annotations\nfrom ocr_worker.preprocess import crop_with_margin\n"
    assert import_violations("ingest", source, "ingest/x.py") == ["ingest/x.py:2: ingest imports ocr_worker.preprocess"]


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("detector_worker", "def f():\n    import redactor_worker.core as core\n    return core\n"),
        ("redactor_worker", "class C:\n    def m(self):\n        from ingest import cameras\n"),
        ("ocr_worker", "import importlib\nmod = importlib.import_module('detector_worker.weights')\n"),
        ("ocr_worker", "mod = __import__('ingest')\n"),
        ("ocr_worker", "import os, alpr.wiring\n"),
        ("common", "from ocr_worker.formats import k_best\n"),
        ("common", "def f():\n    from alpr import cli\n"),
    ],
)
def test_checker_reports_nested_and_dynamic_imports(package, source):
    assert len(import_violations(package, source)) == 1


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("ocr_worker", "from ocr_worker import preprocess\nimport ocr_worker.formats\n"),
        ("ocr_worker", "from . import preprocess\nfrom .formats import k_best\n"),
        ("detector_worker", "import numpy\nfrom common.geometry import crop\nimport ocr_workers_elsewhere\n"),
        ("common", "from common import defaults\nimport yaml\n"),
    ],
)
def test_checker_allows_own_package_common_and_third_parties(package, source):
    assert import_violations(package, source) == []


def test_every_checked_package_has_modules():
    for package in CHECKED:
        assert (REPO / package / "__init__.py").is_file(), package
        assert len(package_files(package)) > 1, package


def test_no_role_imports_another_role_and_common_imports_none():
    violations = []
    for package in CHECKED:
        for path in package_files(package):
            relative = str(path.relative_to(REPO))
            violations += import_violations(package, path.read_text(encoding="utf-8"), relative)
    assert not violations, "imports across roles (roles meet only through queues):\n" + "\n".join(violations)
