"""Fail when the modules of src/infergraph import each other in a cycle.

`make lint` runs it so that the layering stays one-way: a cycle means two modules cannot be
read, tested or loaded apart, and Python resolves it only by the luck of which one is imported
first. The import graph is read from the source (ast), without importing anything:

- every import counts, at module level or inside a function (a function-level import that
  closes a cycle is still a cycle, only a deferred one); imports under `if TYPE_CHECKING:` do
  not, since they never run;
- `from pkg import name` is an edge to `pkg.name` where that is a module, else to `pkg`
  (whose `__init__` must have run to hold `name`);
- importing `pkg.mod` runs `pkg/__init__.py` first, so it is also an edge to each package above
  it, except the importer's own packages (which Python has already started loading). A package
  whose `__init__` imports its own submodules, one of which imports that package, is a cycle.

The same check then runs one floor up, on the subpackages of infergraph (graph, serving, runner,
render, ...): a module of `runner` importing `serving` while one of `serving` imports `runner` is
a cycle between the two layers even where no single module closes one.

Each cycle is printed as the chain that closes it, one per strongly connected group.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("src")
PACKAGE = "infergraph"


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> its file, for every module under `root/package`."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (those under `if TYPE_CHECKING:` are skipped)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, files: dict[str, Path]
) -> set[str]:
    """The modules an import statement names (before adding their parent packages)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level:  # relative: resolved against the importing module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    # `from pkg import mod` names the submodule; `from pkg import thing` needs pkg's init.
    names = {f"{source}.{alias.name}" for alias in node.names}
    submodules = names & files.keys()
    return submodules if submodules == names else submodules | {source}


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of `files` it imports (directly, or through a package's init)."""
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            for target in _targets(node, module, is_package, files):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    if name in files and (name == target or name not in own):
                        edges.add(name)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One closing chain per strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(_chain(graph, set(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _chain(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & group):
                if succ == start:
                    return [*paths[node], start]
                if succ not in paths:
                    paths[succ] = [*paths[node], succ]
                    following.append(succ)
        frontier = following
    return sorted(group)


def package_graph(graph: dict[str, set[str]], package: str = PACKAGE) -> dict[str, set[str]]:
    """The module graph seen one floor down from `package`: `infergraph.serving.x` counts as
    `infergraph.serving`, and a top-level module (`infergraph.cli`) as itself."""
    depth = package.count(".") + 2

    def floor(module: str) -> str:
        return ".".join(module.split(".")[:depth])

    packages: dict[str, set[str]] = {floor(module): set() for module in graph}
    for module, edges in graph.items():
        packages[floor(module)] |= {floor(edge) for edge in edges} - {floor(module)}
    return packages


def main() -> int:
    modules = import_graph(module_files())
    found = [("import cycle", chain) for chain in cycles(modules)]
    found += [("package import cycle", chain) for chain in cycles(package_graph(modules))]
    for what, chain in found:
        print(f"{what}: {' -> '.join(chain)}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
