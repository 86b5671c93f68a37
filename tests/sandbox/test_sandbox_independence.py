"""The sandbox keeps its own reading of Twenty: it imports no client module.

A misreading shared by the client and the sandbox would pass every contract test, so
no module under pipeline/sandbox/ may import pipeline.schema, pipeline.standard,
pipeline.normalize or any other client module; only pipeline.sandbox.* itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import httpx

from pipeline.sandbox import Sandbox
from pipeline.sandbox.standard import fresh_workspace_objects
from pipeline.schema import parse_schema
from pipeline.standard import standard_schema

SANDBOX_DIR = Path(__file__).resolve().parents[2] / "pipeline" / "sandbox"


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` of ``path`` names (absolute form)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = "pipeline.sandbox"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
        ):
            names.update(
                arg.value
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            )
    return names


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import pipeline.schema\nfrom pipeline.normalize import x\nfrom .. import standard\n"
        "import importlib\nimportlib.import_module('pipeline.client')\n"
    )
    assert _imported_modules(sample) >= {
        "pipeline.schema",
        "pipeline.normalize",
        "pipeline",
        "pipeline.client",
    }


def test_sandbox_modules_import_no_client_module() -> None:
    modules = sorted(SANDBOX_DIR.glob("*.py"))
    assert len(modules) > 10  # the walk found the package
    offending = {
        f"{path.name}: {name}"
        for path in modules
        for name in _imported_modules(path)
        if (name == "pipeline" or name.startswith("pipeline."))
        and not (name == "pipeline.sandbox" or name.startswith("pipeline.sandbox."))
    }
    assert offending == set()


async def test_standard_schema_is_the_fresh_workspace_metadata_answer(tmp_path: Path) -> None:
    """``standard_schema()`` parses exactly what a fresh sandbox's metadata API serves."""
    sandbox = Sandbox(tmp_path / "fresh.sqlite")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=sandbox.app),
            base_url="http://sandbox",
            headers={"Authorization": f"Bearer {sandbox.api_key}"},
        ) as api:
            answer = (await api.get("/rest/metadata/objects", params={"limit": 200})).json()
    finally:
        sandbox.close()
    assert answer["pageInfo"]["hasNextPage"] is False
    assert answer["data"] == fresh_workspace_objects()
    assert parse_schema(answer["data"]) == standard_schema()
    person = standard_schema().object("person")
    assert person is not None and person.unique_paths == ["id", "emails.primaryEmail"]
