"""Count the name `Any` inside annotations under src/ (issue 27's measure; not a lint gate).

Counted: parameter and return annotations, annotated assignments and `type X = ...` aliases
(an alias's definition once, not each use). `python tools/count_any.py [root] [--files N]`
prints the total, then the N files with the most.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
from pathlib import Path


def _names_any(node: ast.AST) -> int:
    count = 0
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Name) and sub.id == "Any") or (
            isinstance(sub, ast.Attribute) and sub.attr == "Any"
        ):
            count += 1
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):  # quoted annotations
            with contextlib.suppress(SyntaxError):
                count += _names_any(ast.parse(sub.value, mode="eval"))
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
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        elif isinstance(node, ast.TypeAlias):
            found.append(node.value)
    return found


def count_any(path: Path) -> int:
    tree = ast.parse(path.read_text(), filename=str(path))
    return sum(_names_any(ann) for ann in _annotations(tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="src", type=Path)
    parser.add_argument("--files", type=int, default=0, help="also list the N files with most")
    args = parser.parse_args()
    per_file = {p: count_any(p) for p in sorted(args.root.rglob("*.py"))}
    print(sum(per_file.values()))
    for path, n in sorted(per_file.items(), key=lambda item: -item[1])[: args.files]:
        print(f"{n:5d}  {path}")


if __name__ == "__main__":
    main()
