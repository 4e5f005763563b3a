"""The routing core stays pure: no Django, no clock, no I/O (checked on the source)."""

import ast
from pathlib import Path

import deployments.policy

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
    "deployments.policy",
}
FORBIDDEN_CALLS = {"open", "print", "input"}
FORBIDDEN_NAMES = {"time", "datetime", "random", "os", "socket", "requests", "django"}


def test_policy_modules_import_only_pure_standard_library():
    folder = Path(deployments.policy.__file__).parent
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
                root_ok = name in ALLOWED_IMPORTS or name.startswith("deployments.policy")
                assert root_ok, f"{path.name} imports {name}"
