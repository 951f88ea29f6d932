"""The wheels a lent GPU machine lacks for `benchmarks/gpu_run.sh`, downloaded into `.whl/`.

The lent machines (NVIDIA H100 / H200) run an image with PyTorch, transformers, timm,
Pillow, grpcio and the like, and reach no package registry. MLServer and what it needs
(FastAPI, starlette-exporter, pydantic, uvicorn, ...) are not there. This walks the
installed requirements of `mlserver` and of `infergraph`'s serving extras in this
virtualenv (the versions `uv.lock` pinned), leaves out whatever the device image already
holds (DEVICE_HAS, from the workplace's list of that image's packages: torch and its CUDA
libraries above all, which would not fit the 64 MiB a call may carry), and downloads the rest
as manylinux x86-64 CPython 3.12 wheels with `pip download --no-deps`. infergraph itself
travels as source (`PYTHONPATH=src`).

On the device, `gpu_run.sh` installs `.whl/*.whl` into /tmp/site when the folder is there.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
# hdrhistogram: the load tester's histograms (benchmarks/closed_loop.py drives the served runs).
ROOTS = (
    "mlserver", "httptools", "aiohttp", "orjson", "pydantic", "typer", "rich", "pyyaml",
    "hdrhistogram",
)  # fmt: skip
# Distributions the device image holds (the workplace's KINDS.md, read 2026-11-17), by
# normalised name; a carried wheel would only shadow them. grpcio, protobuf and
# prometheus-client travel anyway: MLServer's generated code and metrics want our versions.
# fmt: off
DEVICE_HAS = {
    "absl-py", "accelerate", "aiofiles", "aiohappyeyeballs", "aiohttp", "aiosignal",
    "annotated-doc", "anyio", "attrs", "certifi", "charset-normalizer", "click", "cloudpickle",
    "filelock", "frozenlist", "fsspec", "h11", "hf-xet", "httpcore", "httpx", "huggingface-hub",
    "idna", "jinja2", "joblib", "markupsafe", "mpmath", "msgpack", "multidict", "networkx",
    "numpy", "nvidia-ml-py", "packaging", "pandas", "pillow", "pip", "propcache", "psutil",
    "pyarrow", "pygments", "python-dateutil", "pyyaml", "regex", "requests", "rich",
    "safetensors", "scipy", "sentencepiece", "sentence-transformers", "setuptools", "six",
    "sympy", "timm", "tokenizers", "torch", "torchaudio", "torchvision", "tqdm", "transformers",
    "triton", "typer", "typing-extensions", "urllib3", "uvloop", "wheel", "yarl", "zipp",
    "numba", "llvmlite", "matplotlib", "ml-dtypes", "markdown-it-py", "mdurl", "wrapt",
    "shellingham",
}
# fmt: on
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")
PLATFORMS += ("manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_24_x86_64")


# The project's virtualenvs hold no pip (uv manages them): the interpreter on PATH does this.
PIP = shutil.which("python3") or sys.executable


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: tuple[str, ...]) -> dict[str, str]:
    """Installed distributions `roots` need, transitively (markers for this interpreter)."""
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = normalise(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this virtualenv does not hold
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def download(wanted: dict[str, str], into: Path) -> None:
    into.mkdir(exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    for name, version in sorted(wanted.items()):
        cmd = [PIP, "-m", "pip", "download", "--quiet", "--no-deps"]
        cmd += ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
        cmd += [*platforms, "-d", str(into), f"{name}=={version}"]
        subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / ".whl")
    parser.add_argument("--list", action="store_true", help="print what would be fetched")
    args = parser.parse_args()
    wanted = {k: v for k, v in closure(ROOTS).items() if k not in DEVICE_HAS}
    for name, version in sorted(wanted.items()):
        print(f"{name}=={version}")
    if not args.list:
        download(wanted, args.out)
        total = sum(p.stat().st_size for p in args.out.glob("*.whl")) / 2**20
        print(f"{len(wanted)} wheels, {total:.1f} MiB in {args.out} (a call carries 64 MiB)")


if __name__ == "__main__":
    main()
