"""The architecture, as the folders draw it, checked from the source (every import, module level or lazy).

    entry      CLI, FC handlers, HTTP API, the composition root (bootstrap), the local-cloud commands
      ↓
    services   plan, dispatch, reconcile, ingest, sender, timer, report (the jobs, over the interfaces below)
      ↓
    adapters   each Alibaba Cloud SDK wrapped once (CAMS, OSS, FC, the OpenAPI client)
      ↓
    store      the Store interface and its two implementations (SQLite, Tablestore)
      ↓
    runtime    environment variable names, structured logs, crash checkpoints
      ↓
    core       pure domain: options, phones, intake, planning, outcomes, errors (no SDK, no I/O of its own)

An arrow points down only: a module imports its own layer or lower ones, never a higher one, and no import
cycle exists between modules. ``deploy/`` (the package builder and the s.yaml validator: build-time tools,
not shipped) stands aside: nothing imports it, and it imports the product only through ``core``. The
emulators (``alibaba_localcloud``) are a package of their own that imports nothing from the product
(``test_localcloud_package.py``); of the product, only the local-cloud entry points and ``deploy`` use them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
PACKAGE = SHARED / "chatapp_mass"
LAYERS = ["core", "runtime", "store", "adapters", "services", "entry"]
USES_EMULATORS = {"chatapp_mass.entry.localcloud", "chatapp_mass.entry.invoke", "chatapp_mass.entry.demo"}
LONG = 500  # lines: a longer module says why in its docstring ("Longer than 500 lines: ...")


def module_name(path: Path) -> str:
    parts = path.relative_to(SHARED).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(package.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports anywhere in its body (``from a import b`` counts as
    ``a.b`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known or name.startswith("alibaba_localcloud")}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else None


GRAPH = {name: imports_of(path, set(modules())) for name, path in modules().items()}


def test_every_module_sits_in_a_layer_or_is_the_package_root_or_deploy() -> None:
    roots = {
        "chatapp_mass",
        "chatapp_mass.__main__",
        *(f"chatapp_mass.{folder}" for folder in [*LAYERS, "deploy"]),
    }
    loose = [
        m
        for m in GRAPH
        if layer_of(m) is None and m not in roots and not m.startswith("chatapp_mass.deploy.")
    ]
    assert loose == [], f"modules outside the layer folders: {loose}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_only(module: str) -> None:
    upward = []
    own = layer_of(module)
    for target in sorted(GRAPH[module]):
        if target.startswith("alibaba_localcloud"):
            if module not in USES_EMULATORS and not module.startswith("chatapp_mass.deploy"):
                upward.append(f"{target} (the emulators: only the local-cloud entry points use them)")
            continue
        if target.startswith("chatapp_mass.deploy") and not module.startswith("chatapp_mass.deploy"):
            upward.append(f"{target} (deploy is a build-time tool nothing imports)")
        theirs = layer_of(target)
        if module.startswith("chatapp_mass.deploy"):
            if theirs not in (None, "core"):
                upward.append(f"{target} (deploy uses the product through core only)")
        elif own is not None and theirs is not None and LAYERS.index(theirs) > LAYERS.index(own):
            upward.append(f"{target} ({theirs} is above {own})")
    assert upward == [], f"{module} imports upward: {upward}"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(GRAPH.get(node, ())):
            if target not in GRAPH or target == node:
                continue
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for start in sorted(GRAPH):
        if start not in state:
            visit(start, [start])
    # a package's __init__ importing its own submodule is not a cycle of the architecture
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c[1:])]
    assert real == [], f"import cycles: {real}"


EVERY_MODULE = {**modules(), **modules(SHARED / "alibaba_localcloud")}


@pytest.mark.parametrize("module", sorted(EVERY_MODULE))
def test_a_long_module_says_why_and_every_module_says_what_it_owns(module: str) -> None:
    path = EVERY_MODULE[module]
    text = path.read_text(encoding="utf-8")
    if path.name == "__init__.py" and not text.strip():
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert doc.strip(), f"{path.relative_to(SHARED)}: no module docstring saying what it owns"
    lines = text.count("\n")
    if lines > LONG:
        assert "Longer than 500 lines:" in doc, (
            f"{path.relative_to(SHARED)}: {lines} lines and no reason at its top"
        )


def test_handlers_stay_thin() -> None:
    """Each FC handler parses nothing and decides nothing: it builds the services and hands the event on."""
    tree = ast.parse((PACKAGE / "entry" / "handlers.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in ("ingest", "sender", "api"):
            body = node.end_lineno - node.lineno  # type: ignore[operator]
            assert body <= 12, f"handler {node.name} is {body} lines: move the work into a service"
