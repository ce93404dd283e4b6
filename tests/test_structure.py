"""The house rules of the source tree: which folder may import which, no import cycles, no oversized files.

Read from the source (ast), not from the installed wheel, so a new lazy import inside a function counts too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"stream": "stream", "models": "models", "engines": "engines", "tools": "tools", "eval": "eval"}
# folder -> the ideud folders it may import (besides itself)
ALLOWED = {
    "models": set(),
    "engines": {"models"},  # an engine runs a model
    "eval": {"models"},
    "stream": {"models", "engines"},
    "tools": {"stream", "models", "engines", "eval"},
}
MAX_LINES = 500
UNPACKAGED = ("tools/bench/", "tools/build/", "tools/gpu/")


def _modules() -> dict[str, Path]:
    mods = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(UNPACKAGED):
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods["ideud." + ".".join(parts)] = path
    return mods


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(p, m, known) for m, p in mods.items()}


def test_folders_import_only_what_they_may(graph):
    bad = []
    for mod, deps in graph.items():
        folder = mod.split(".")[1]
        for d in deps:
            other = d.split(".")[1]
            if other != folder and other not in ALLOWED[folder]:
                bad.append(f"{mod} -> {d}")
    assert not bad, "imports across forbidden folders: " + ", ".join(sorted(bad))


def test_no_import_cycles(graph):
    # Tarjan's strongly connected components; any component of more than one module is a cycle
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    # a package importing its own submodules (an __init__ re-exporting) is not a cycle of jobs
    cycles = [c for c in comps if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert not cycles, f"import cycles: {cycles}"


def test_no_file_over_the_limit():
    big = []
    for folder in PACKAGES:
        for path in (ROOT / folder).rglob("*.py"):
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                big.append(f"{path.relative_to(ROOT)} ({n})")
    assert not big, "files over 500 lines: " + ", ".join(sorted(big))


def test_wheel_packages_no_benchmark_or_build_script():
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = conf["tool"]["setuptools"]["packages"]
    assert not [p for p in packages if p.split(".")[-1] in ("bench", "build", "gpu")], packages
    for p in (ROOT / "tools").glob("*.py"):
        assert not p.name.startswith(("bench", "build_")), f"{p.name} would ship in the wheel"
