"""The routing core and the statistics stay pure: no Django, no clock, no I/O (checked on the
source)."""

import ast
from pathlib import Path

import pytest

import deployments.policy
import deployments.statistics

ALLOWED_IMPORTS = {
    "collections",
    "collections.abc",
    "dataclasses",
    "enum",
    "functools",
    "hashlib",
    "math",
    "statistics",
    "typing",
}
FORBIDDEN_CALLS = {"open", "print", "input"}
FORBIDDEN_NAMES = {"time", "datetime", "random", "os", "socket", "requests", "django"}


# Each pure package, with the pure packages it may import (the policy reads the statistics;
# the statistics read nothing of the app).
PURE_PACKAGES = [
    (deployments.policy, ("deployments.policy", "deployments.statistics")),
    (deployments.statistics, ("deployments.statistics",)),
]


@pytest.mark.parametrize(
    ("package", "may_import"), PURE_PACKAGES, ids=[p.__name__ for p, _ in PURE_PACKAGES]
)
def test_pure_modules_import_only_pure_standard_library(package, may_import):
    folder = Path(package.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in FORBIDDEN_CALLS, f"{path.name} calls {node.func.id}"
                if isinstance(node, ast.Name):
                    assert node.id not in FORBIDDEN_NAMES, f"{path.name} uses {node.id}"
                continue
            for name in names:
                root_ok = name in ALLOWED_IMPORTS or name.startswith(may_import)
                assert root_ok, f"{path.name} imports {name}"
