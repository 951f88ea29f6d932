"""numba and matplotlib are the `planner` extra: the operator runs without them, and the planner
without them says which extra to install instead of failing on a bare ImportError.

Each check runs in a fresh interpreter where importing numba and matplotlib fails, as in the
operator image, which installs only the `operator` extra.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WITHOUT_PLANNER_EXTRA = """
import sys
for name in ("numba", "matplotlib"):
    sys.modules[name] = None  # any import of it now raises ModuleNotFoundError
"""


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_PLANNER_EXTRA + script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_operator_imports_without_the_planner_extra() -> None:
    result = _run(
        "import infergraph.operator.handlers, infergraph.render, infergraph.cli\nprint('ok')"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


def test_planner_without_its_extra_names_the_extra() -> None:
    result = _run(
        "from infergraph.errors import MissingExtraError\n"
        "try:\n"
        "    import infergraph.planner.planning\n"
        "except MissingExtraError as exc:\n"
        "    print(exc.package, exc.extra, isinstance(exc, ImportError))\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, message = result.stdout.strip().splitlines()
    assert first == "numba planner True"
    assert "pip install 'infergraph[planner]'" in message
