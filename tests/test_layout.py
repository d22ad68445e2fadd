"""The layout's promise, read from the code: imports run down the pipeline, never back, never in a circle.

Stages: data -> evaluate -> train -> analyze -> run -> report, on foundation modules (the top-level
modules of factlearn/). Every `factlearn` import counts: module level, inside functions, relative.
Entry points (cli, api, __main__, models_cli) may import anything; nothing may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import factlearn

ROOT = Path(factlearn.__file__).parent
STAGES = ("data", "evaluate", "train", "analyze", "run", "report")
ENTRY_POINTS = {"factlearn.cli", "factlearn.api", "factlearn.__main__", "factlearn.models_cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Every factlearn module `path` imports, at any depth of its code; `from pkg import mod` names mod."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import factlearn.data.world.x` -> the module it names
                target = target.rpartition(".")[0]
            if target.startswith("factlearn") and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def stage(name: str) -> int | None:
    """0 for foundations, 1.. for the stages in pipeline order, None for entry points and the package."""
    if name in ENTRY_POINTS or name == "factlearn":
        return None
    parts = name.split(".")
    if len(parts) == 2 and parts[1] not in STAGES:
        return 0
    assert parts[1] in STAGES, f"{name} is in no stage; add its folder to STAGES in pipeline order"
    return 1 + STAGES.index(parts[1])


def label(level: int) -> str:
    return "foundation" if level == 0 else STAGES[level - 1]


def test_the_module_graph_is_read():
    edges = graph()
    assert len(edges) > 50 and sum(len(v) for v in edges.values()) > 100
    assert "factlearn.train.config" in edges["factlearn.train.trainer"]
    assert "factlearn.errors" in edges["factlearn.data.files"]


def test_imports_run_down_the_pipeline():
    backwards = []
    for src, targets in graph().items():
        for dst in sorted(targets):
            if dst in ENTRY_POINTS and src not in ENTRY_POINTS:
                backwards.append(f"{src} imports the entry point {dst}")
            elif (a := stage(src)) is not None and (b := stage(dst)) is not None and b > a:
                backwards.append(f"{src} ({label(a)}) imports {dst} ({label(b)})")
    assert not backwards, "imports against the pipeline:\n" + "\n".join(backwards)


def test_no_module_imports_itself_in_a_circle():
    edges = graph()
    cycles = [sorted(c) for c in strongly_connected(edges) if len(c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    found = strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(map(sorted, (c for c in found if len(c) > 1))) == [["a", "b", "c"]]


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative): the strongly connected components of the import graph."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components
