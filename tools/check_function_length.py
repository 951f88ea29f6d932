"""Fail when a function in the shipped code (src/, async_load_tester/src/) or the code that
measures it (benchmarks/, async_load_tester/bench/, images/, tools/) is longer than 60 lines
(signature, docstring and body).

`make lint` runs it so that the limit the project keeps stays kept: a longer function is split
into named steps instead. Lines are counted as the AST sees them (end_lineno - lineno + 1).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIMIT = 60
ROOTS = (
    Path("src"),
    Path("async_load_tester/src"),
    Path("benchmarks"),
    Path("async_load_tester/bench"),
    Path("images"),
    Path("tools"),
)


def long_functions(roots: tuple[Path, ...] = ROOTS, limit: int = LIMIT) -> list[str]:
    """`path:line name (N lines)` for every function or method over `limit` lines."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > limit:
                        found.append(f"{path}:{node.lineno} {node.name} ({length} lines)")
    return found


def main() -> int:
    found = long_functions()
    for line in found:
        print(f"{line}: over {LIMIT} lines; split it into named steps", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
