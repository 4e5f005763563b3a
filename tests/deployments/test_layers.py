"""Configuration sits below the facts: nothing in deployments imports the apps that read or
write review facts, not even inside a function (checked on the source)."""

import ast
from pathlib import Path

import deployments

ABOVE = ("reviewapp.reviews", "reviewapp.monitoring", "reviewapp.datasets", "reviewapp.control")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            if node.module == "reviewapp":
                yield from (f"reviewapp.{alias.name}" for alias in node.names)


def test_deployments_imports_nothing_from_the_apps_above_it():
    folder = Path(deployments.__file__).parent
    wrong = [
        f"{path.relative_to(folder)} imports {name}"
        for path in sorted(folder.rglob("*.py"))
        for name in _imports(path)
        if name.startswith(ABOVE)
    ]
    assert wrong == []
