"""Count the name `Any` inside annotations under src/ (issue 27's measure; not a lint gate).

Counted: parameter and return annotations and annotated assignments. An alias whose
definition holds `Any` (`type X = dict[str, Any]`, `X = dict[str, Any]`, `X: TypeAlias = ...`)
counts at each use, as often as its definition names `Any`: renaming `dict[str, Any]` hides
nothing. Uses are resolved through `from module import X [as Y]` and `module.X`, so another
module's `X` that holds no `Any` is not counted. `python tools/count_any.py [root] [--files N]`
prints the total, then the N files with the most.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Module:
    """One source file: its syntax tree and the names it binds to aliases and modules."""

    name: str
    tree: ast.Module
    aliases: dict[str, int] = field(default_factory=dict)  # alias name -> Any per use
    imported: dict[str, tuple[str, str]] = field(default_factory=dict)  # local -> (module, name)
    modules: dict[str, str] = field(default_factory=dict)  # local name -> module


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _alias_definitions(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level type aliases: `type X = ...`, `X: TypeAlias = ...`, `X = <subscript>`."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.TypeAlias) and isinstance(node.name, ast.Name):
            found[node.name.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if "TypeAlias" in ast.unparse(node.annotation) and node.value is not None:
                found[node.target.id] = node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            typelike = isinstance(node.value, ast.Subscript | ast.Name | ast.Attribute | ast.BinOp)
            if isinstance(target, ast.Name) and target.id[:1].isupper() and typelike:
                found[target.id] = node.value
    return found


def _bindings(module: Module, known: set[str]) -> None:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for name in node.names:
                local = name.asname or name.name
                if f"{node.module}.{name.name}" in known:
                    module.modules[local] = f"{node.module}.{name.name}"
                else:
                    module.imported[local] = (node.module, name.name)
        elif isinstance(node, ast.Import):
            for name in node.names:
                module.modules[name.asname or name.name] = name.name


def _alias_weight(module: Module, node: ast.AST, modules: dict[str, Module]) -> int | None:
    """How many `Any` the alias named by `node` stands for, or None if it names no alias."""
    if isinstance(node, ast.Name):
        if node.id in module.aliases:
            return module.aliases[node.id]
        source, name = module.imported.get(node.id, ("", ""))
        if source in modules:
            return modules[source].aliases.get(name)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        source = module.modules.get(node.value.id, "")
        if source in modules:
            return modules[source].aliases.get(node.attr)
    return None


def _names_any(module: Module, node: ast.AST, modules: dict[str, Module]) -> int:
    count = 0
    for sub in ast.walk(node):
        weight = _alias_weight(module, sub, modules)
        if weight is not None:
            count += weight
        elif (isinstance(sub, ast.Name) and sub.id == "Any") or (
            isinstance(sub, ast.Attribute) and sub.attr == "Any"
        ):
            count += 1
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):  # quoted annotations
            with contextlib.suppress(SyntaxError):
                count += _names_any(module, ast.parse(sub.value, mode="eval"), modules)
    return count


def _annotations(tree: ast.AST) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None and arg.annotation is not None:
                    found.append(arg.annotation)
            if node.returns is not None:
                found.append(node.returns)
        elif isinstance(node, ast.AnnAssign) and "TypeAlias" not in ast.unparse(node.annotation):
            found.append(node.annotation)
    return found


def _resolve_aliases(modules: dict[str, Module]) -> None:
    """Weigh each alias by the `Any` in its definition, aliases of aliases included."""
    definitions = {name: _alias_definitions(m.tree) for name, m in modules.items()}
    for _ in range(5):  # an alias may name another alias, defined anywhere: settle in passes
        for name, module in modules.items():
            for alias, value in definitions[name].items():
                module.aliases[alias] = _names_any(module, value, modules)
    for module in modules.values():
        module.aliases = {alias: n for alias, n in module.aliases.items() if n > 0}


def count_tree(root: Path) -> tuple[dict[Path, int], list[Module]]:
    """`Any` per file under `root`, and the modules with their aliases of `Any`."""
    paths = sorted(root.rglob("*.py"))
    modules: dict[str, Module] = {}
    by_path: dict[Path, Module] = {}
    for path in paths:
        module = Module(_module_name(root, path), ast.parse(path.read_text(), filename=str(path)))
        modules[module.name] = by_path[path] = module
    for module in modules.values():
        _bindings(module, set(modules))
    _resolve_aliases(modules)
    per_file = {
        path: sum(_names_any(m, ann, modules) for ann in _annotations(m.tree))
        for path, m in by_path.items()
    }
    return per_file, sorted(modules.values(), key=lambda m: m.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="src", type=Path)
    parser.add_argument("--files", type=int, default=0, help="also list the N files with most")
    parser.add_argument("--aliases", action="store_true", help="also list the aliases of Any")
    args = parser.parse_args()
    per_file, modules = count_tree(args.root)
    print(sum(per_file.values()))
    for path, n in sorted(per_file.items(), key=lambda item: -item[1])[: args.files]:
        print(f"{n:5d}  {path}")
    if args.aliases:
        for module in modules:
            for alias, weight in sorted(module.aliases.items()):
                print(f"alias {module.name}.{alias}: {weight} Any a use")


if __name__ == "__main__":
    main()
