"""The structure checks `make lint` runs (tools/): each finds what it is for, in a small tree
written here, and the real src/ passes them."""

from __future__ import annotations

from pathlib import Path

from tools.check_function_length import ROOTS, long_functions
from tools.check_import_cycles import cycles, import_graph, module_files, package_graph


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "src"


def _found(src: Path, package: str = "pkg") -> list[list[str]]:
    modules = import_graph(module_files(src, package))
    return cycles(modules) + cycles(package_graph(modules, package))


def test_a_function_level_import_that_closes_a_cycle_is_a_cycle(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a/__init__.py": "",
            "pkg/a/schema.py": "def parse():\n    from pkg.a.compiler import run\n",
            "pkg/a/compiler.py": "from pkg.a.schema import parse\n",
        },
    )
    assert _found(src) == [["pkg.a.compiler", "pkg.a.schema", "pkg.a.compiler"]]


def test_type_checking_imports_and_submodule_imports_from_the_own_package_are_not(
    tmp_path: Path,
) -> None:
    src = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            # An init importing its submodules, which import each other through the package.
            "pkg/r/__init__.py": "from pkg.r import one, two\n",
            "pkg/r/one.py": "from pkg.r import two\n",
            "pkg/r/two.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.r.one import x\n"
            ),
        },
    )
    assert _found(src) == []


def test_a_submodule_needing_a_name_from_its_package_init_that_imports_it_is_a_cycle(
    tmp_path: Path,
) -> None:
    src = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/r/__init__.py": "from pkg.r.one import render\nENGINES = ()\n",
            "pkg/r/one.py": "from pkg.r import ENGINES\n",
        },
    )
    assert _found(src) == [["pkg.r", "pkg.r.one", "pkg.r"]]


def test_two_packages_importing_each_other_through_different_modules_are_a_cycle(
    tmp_path: Path,
) -> None:
    src = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/runner/__init__.py": "",
            "pkg/runner/router.py": "from pkg.serving.protocol import X\n",
            "pkg/serving/__init__.py": "",
            "pkg/serving/protocol.py": "",
            "pkg/serving/step.py": "from ..runner import tensors\n",
            "pkg/runner/tensors.py": "",
        },
    )
    assert _found(src) == [["pkg.runner", "pkg.serving", "pkg.runner"]]


def test_a_long_function_is_named_with_its_length(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    src = _tree(tmp_path, {"m.py": f"def short():\n    pass\n\ndef long():\n{body}"})
    assert long_functions((src,)) == [f"{src / 'm.py'}:4 long (61 lines)"]


def test_src_has_no_import_cycle_and_no_long_function() -> None:
    src = Path(__file__).resolve().parent.parent / "src"
    assert _found(src, "infergraph") == []
    assert long_functions((src,)) == []


def test_the_length_check_covers_the_load_tester_and_it_has_no_long_function() -> None:
    """The load tester ships from this repository too, so the 60-line limit holds there (#27)."""
    root = Path(__file__).resolve().parent.parent
    assert Path("async_load_tester/src") in ROOTS
    assert long_functions((root / "async_load_tester" / "src",)) == []


def test_the_length_check_covers_the_benchmarks_and_tools_and_they_have_no_long_function() -> None:
    """The figures the issues are judged by come from benchmarks/: the same limit holds there."""
    root = Path(__file__).resolve().parent.parent
    measured = ("benchmarks", "async_load_tester/bench", "images", "tools")
    assert all(Path(folder) in ROOTS for folder in measured)
    assert long_functions(tuple(root / folder for folder in measured)) == []
