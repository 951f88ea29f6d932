"""`make bench-images`: size and layer count of every built image -> bench-results/images.json.

Uncompressed sizes are buildah's own per-layer accounting (containers-storage's diff sizes);
the compressed size is what a registry stores and a node pulls: the layers gzip-compressed by
`buildah push` into a scratch folder. "own" counts only the layers above the python base, which
on machines without a registry is a local stand-in (images/README.md), so "own" is the figure
that carries over to the published images.

    python images/bench_images.py [--no-compressed]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from build import base_images
from catalog import IMAGES, REPO, Image, torch_cpu_index_problem
from containers import inspect

OUT = REPO / "bench-results" / "images.json"
MB = 1_000_000
# MLServer's own published images, for scale. Docker Hub's tag pages for seldonio/mlserver were
# not in the material reachable from here; these are the sizes a downstream project measured.
MLSERVER_REFERENCE = {
    "source": "https://github.com/validatedpatterns/industrial-edge/pull/343 (2025-01-21): "
    "'almost a 1/4th of the 1.3.5 bigger image 0.93GB vs 3.74GB'",
    "seldonio/mlserver:1.3.5 (all runtimes)_gb": 3.74,
    "seldonio/mlserver:1.3.5-sklearn_gb": 0.93,
}


def layer_sizes(ref: str) -> list[int]:
    """Uncompressed size of each layer of `ref`, base first (containers-storage's records)."""
    store = json.loads(subprocess.run(["buildah", "info"], capture_output=True, check=True).stdout)
    root, driver = Path(store["store"]["GraphRoot"]), store["store"]["GraphDriverName"]
    images = json.loads((root / f"{driver}-images" / "images.json").read_text())
    records = json.loads((root / f"{driver}-layers" / "layers.json").read_text())
    layers = {layer["id"]: layer for layer in records}
    image_id = inspect(ref)["FromImageID"]
    top = next(i["layer"] for i in images if i["id"] == image_id)
    sizes = []
    while top:
        sizes.append(int(layers[top].get("diff-size", 0)))
        top = layers[top].get("parent", "")
    return sizes[::-1]


def compressed_size(ref: str) -> int:
    """Bytes of the gzip-compressed layers, as pushed to a registry."""
    with tempfile.TemporaryDirectory(prefix="image-size-") as folder:
        subprocess.run(
            ["nice", "-n", "10", "buildah", "push", "--quiet", "--compression-format", "gzip",
             ref, f"dir:{folder}/image"],
            check=True, capture_output=True,
        )  # fmt: skip
        manifest = json.loads((Path(folder) / "image" / "manifest.json").read_text())
    return sum(int(layer["size"]) for layer in manifest["layers"])


def measure(image: Image, base: list[int], compressed: bool) -> dict[str, Any]:
    sizes = layer_sizes(image.ref())
    own = sizes[len(base) :]
    row: dict[str, Any] = {
        "image": image.ref(),
        "target": image.target,
        "torch": image.torch,
        "built": True,
        "size_mb": round(sum(sizes) / MB, 1),
        "own_size_mb": round(sum(own) / MB, 1),
        "layers": len(sizes),
        "own_layers": len(own),
        "largest_layer_mb": round(max(sizes) / MB, 1),
    }
    if compressed:
        row["compressed_mb"] = round(compressed_size(image.ref()) / MB, 1)
    return row


def not_built(image: Image, cpu_problem: str | None) -> dict[str, Any]:
    reason = "not built on this machine (make images)"
    if image.torch == "cpu" and cpu_problem:
        reason = f"not buildable here: torch CPU wheels come from {cpu_problem}"
    return {"image": image.ref(), "target": image.target, "torch": image.torch, "built": False,
            "reason": reason}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compressed", action="store_true", help="skip the gzip push")
    args = parser.parse_args()
    python_base, _ = base_images()
    base = layer_sizes(python_base)
    cpu_problem = torch_cpu_index_problem()
    rows = []
    for image in IMAGES:
        try:
            inspect(image.ref())
        except LookupError:
            rows.append(not_built(image, cpu_problem))
            continue
        rows.append(measure(image, base, not args.no_compressed))
    labels = inspect(python_base)["Docker"]["config"].get("Labels") or {}
    note = labels.get("org.opencontainers.image.description", "pulled from its registry")
    result = {
        "machine": "2-core CPU, no GPU; buildah (overlay storage), linux/amd64",
        "base": {
            "image": python_base,
            "size_mb": round(sum(base) / MB, 1),
            "layers": len(base),
            "note": note,
        },
        "rows": rows,
        "summary": summary(rows),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {OUT.relative_to(REPO)}")
    return 0


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    built = {r["target"]: r for r in rows if r["built"]}
    out: dict[str, Any] = {
        f"{t}_mb": r.get("compressed_mb", r["size_mb"]) for t, r in built.items()
    }
    out["sizes"] = "compressed (gzip) MB where measured, else uncompressed"
    out["uncompressed_mb"] = {t: r["size_mb"] for t, r in built.items()}
    out["mlserver_published"] = MLSERVER_REFERENCE
    out["not_built"] = [r["target"] for r in rows if not r["built"]]
    return out


def print_table(result: dict[str, Any]) -> None:
    print(f"{'image':<26} {'torch':<5} {'size MB':>8} {'own MB':>8} {'gzip MB':>8} {'layers':>6}")
    for row in result["rows"]:
        if not row["built"]:
            print(f"{row['target']:<26} {row['torch']:<5} {row['reason']}")
            continue
        gzip = row.get("compressed_mb", float("nan"))
        print(
            f"{row['target']:<26} {row['torch']:<5} {row['size_mb']:>8.1f}"
            f" {row['own_size_mb']:>8.1f} {gzip:>8.1f} {row['layers']:>6}"
        )
    base = result["base"]
    print(f"base: {base['image']}, {base['size_mb']:.1f} MB, {base['layers']} layer(s)")


if __name__ == "__main__":
    if not shutil.which("buildah"):
        raise SystemExit("buildah not found: `make bench-images` installs it with apt-get (root)")
    raise SystemExit(main())
