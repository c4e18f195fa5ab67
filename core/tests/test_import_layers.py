"""The apps' import graph has no arrow pointing up.

Every .py of every app is parsed with ``ast``, imports inside functions
included, and an import of an app higher in ``LAYERS`` (or of the project
package) is an upward arrow. Test code is left out: tests exercise an app
together with whatever sits above it, and nothing imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

# Lowest first. An app may import only itself and the apps before it.
LAYERS = [
    "core",
    "pqc",
    "ecus",
    "firmware",
    "vehicles",
    "uptane",
    "ota",
    "diagnostics",
    "webhooks",
    "telematics",
    "console",
    "otactl",
]
# Only the project package wires apps together; no app may import it.
PROJECT = "otaproject"

ROOT = Path(__file__).resolve().parents[2]


def _is_test_code(path: Path) -> bool:
    return "tests" in path.parts or path.name.startswith("test_") or path.name == "conftest.py"


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_arrows(root: Path = ROOT) -> list[str]:
    rank = {app: index for index, app in enumerate(LAYERS)}
    arrows = []
    for app in LAYERS:
        app_dir = root / app
        for path in sorted(app_dir.rglob("*.py")):
            relative = path.relative_to(root)
            if _is_test_code(relative):
                continue
            tree = ast.parse(path.read_text(), filename=str(relative))
            for lineno, module in sorted(_imported_modules(tree)):
                target = module.split(".")[0]
                if target == PROJECT or rank.get(target, -1) > rank[app]:
                    arrows.append(f"{relative.as_posix()}:{lineno} {app} -> {target}")
    return arrows


def test_every_layer_is_an_app_directory():
    missing = [app for app in LAYERS if not (ROOT / app / "__init__.py").is_file()]
    assert missing == []


def test_no_app_imports_an_app_above_it():
    arrows = upward_arrows()
    assert arrows == [], "upward imports:\n" + "\n".join(arrows)


def test_the_scan_sees_imports_inside_functions(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "late.py").write_text(
        "import core.db\n\ndef f():\n    from vehicles.models import Vehicle\n    import otaproject.urls\n"
    )
    (tmp_path / "core" / "tests").mkdir()
    (tmp_path / "core" / "tests" / "test_x.py").write_text("import vehicles\n")
    for app in LAYERS[1:]:
        (tmp_path / app).mkdir()
    (tmp_path / "vehicles" / "ok.py").write_text("from core import audit\nfrom . import models\n")

    assert upward_arrows(tmp_path) == [
        "core/late.py:4 core -> vehicles",
        "core/late.py:5 core -> otaproject",
    ]
