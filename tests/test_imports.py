"""The package's import structure: no cycle, the layering of docs/architecture.md, every module importable alone.

The dependency graph is read from the source (every ``import`` of ``multitask_vision.*``, at module level or
inside a function: a lazy import closes a cycle as much as a top-level one does). An edge goes to the module
named (``from multitask_vision.models import spec`` -> ``multitask_vision.models.spec``), not to the packages
above it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "multitask_vision"

# Layers, bottom (0) to top: a module imports only modules of its own layer or below (docs/architecture.md).
LAYERS = {
    "registry": 0,
    "structures": 0,
    "utils": 0,
    "models": 1,
    "datasets": 1,
    "evaluation": 2,
    "engine": 2,
    "compression": 2,
    "visualization": 2,
    "apis": 3,
}
NEVER_EACH_OTHER = [("models", "datasets")]
TOP = PACKAGE  # the package's __init__ (register_all_modules) may import everything


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """Every module (ours or not) that ``path`` imports anywhere in its body, as absolute dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {
        name: {m for m in imported_modules(path, name, known) if m in known and m != name}
        for name, path in files.items()
    }


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else TOP


def find_cycle(deps: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(deps[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(deps):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_module_graph_is_read_from_the_source():
    deps = graph()
    # a module-level import, a function-level import and an import of a package's name
    assert "multitask_vision.registry" in deps["multitask_vision.models.heads.det_head"]
    assert "multitask_vision.visualization" in deps["multitask_vision.engine.vis_hooks"]
    assert "multitask_vision.models.adapters" in deps["multitask_vision.models"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_layering():
    files = module_files()
    unknown = sorted({layer_of(m) for m in files} - set(LAYERS) - {TOP})
    assert not unknown, f"add the new subpackage(s) {unknown} to LAYERS here and to docs/architecture.md"
    bad = []
    for module, deps in graph().items():
        src = layer_of(module)
        if src == TOP:
            continue
        for dep in sorted(deps):
            dst = layer_of(dep)
            if dst == TOP:
                bad.append(
                    f"{module} imports the package root {dep} (register_all_modules is for entry points)"
                )
            elif LAYERS[dst] > LAYERS[src]:
                bad.append(f"{module} (layer {src}) imports {dep} (layer {dst}, above it)")
            elif (src, dst) in NEVER_EACH_OTHER or (dst, src) in NEVER_EACH_OTHER:
                bad.append(f"{module} imports {dep}: {src} and {dst} never import each other")
    assert not bad, "\n".join(bad)


def test_no_module_imports_an_entry_script_or_the_tests():
    scripts = {p.stem for p in ROOT.glob("*.py")} | {"tests"}
    files = module_files()
    bad = [
        f"{name} imports {dep}"
        for name, path in files.items()
        for dep in imported_modules(path, name, set(files))
        if dep.split(".")[0] in scripts
    ]
    assert not bad, "\n".join(bad)


def module_level_imports(path: Path) -> set[str]:
    """Absolute imports ``path`` runs when it is imported (not those inside functions)."""
    found, todo = set(), list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


def test_every_module_imports_alone():
    """Each module in a fresh copy of one interpreter (forked after the third-party modules that ours import
    at module level are loaded, so each child runs only our code): it imports without another module of ours
    having been imported first."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    files = module_files()
    third_party = sorted(
        {m for path in files.values() for m in module_level_imports(path) if m.split(".")[0] != PACKAGE}
    )
    script = textwrap.dedent(
        f"""
        import importlib, os, sys, traceback
        for lib in {third_party!r}:
            importlib.import_module(lib)
        failed = []
        for name in {sorted(files)!r}:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            if os.waitpid(pid, 0)[1]:
                failed.append(name)
        print("modules that fail to import alone:", failed)
        sys.exit(1 if failed else 0)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
