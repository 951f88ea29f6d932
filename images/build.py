"""`make images`: build every image with buildah (no Docker daemon), tagged as a release is.

Base images come from the registries on a machine that reaches them; where none can be reached
(`--local-bases`), images/local-bases.sh first puts stand-ins under the exact names the
Dockerfile's FROM lines use into buildah's local storage and the build never pulls.

    python images/build.py [--local-bases] [TARGET ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

from catalog import DOCKERFILE, IMAGES, REPO, Image, by_target, revision, torch_cpu_index_problem

from infergraph import __version__
from infergraph.container_images import CUDA_SUFFIX


def base_images() -> tuple[str, str]:
    """The python and uv images the Dockerfile's FROM lines name (stage names excluded)."""
    stages: set[str] = set()
    python = uv = ""
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if not match:
            continue
        source, stage = match.groups()
        if source not in stages:
            if "/python:" in source:
                python = source
            elif "/uv:" in source:
                uv = source
        if stage:
            stages.add(stage)
    if not (python and uv):
        raise SystemExit(f"{DOCKERFILE}: expected a python and a uv base image in FROM lines")
    return python, uv


def build(image: Image, tags: list[str], pull: str) -> float:
    command = [
        "buildah", "bud", "--isolation", "chroot", f"--pull={pull}",
        "--format", "docker", "-f", str(DOCKERFILE), "--target", image.target,
        "--label", f"org.opencontainers.image.version={__version__}",
        "--label", f"org.opencontainers.image.revision={revision()}",
        "--label", f"org.opencontainers.image.title={image.name}",
    ]  # fmt: skip
    for tag in tags:
        command += ["-t", tag]
    # A TLS-inspecting proxy's CA (this sandbox's) reaches the RUN steps as a bind mount over
    # the bundle uv reads (UV_NATIVE_TLS); bind mounts never land in a layer.
    ca_bundle = os.environ.get("SSL_CERT_FILE", "")
    if ca_bundle and os.path.isfile(ca_bundle):
        command += ["-v", f"{ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    started = time.monotonic()
    subprocess.run(["nice", "-n", "10", *command, str(REPO)], check=True)
    return time.monotonic() - started


def drop_superseded(image: Image, tags: list[str]) -> None:
    """Untag this image's `sha-*` tags from earlier commits, so old builds do not pile up."""
    listing = subprocess.run(
        ["buildah", "images", "--json"], capture_output=True, text=True, check=True
    ).stdout
    current = set(tags)
    repo = image.ref().rsplit(":", 1)[0]
    suffix = CUDA_SUFFIX if image.cuda else ""
    stale = re.compile(re.escape(f"{repo}:sha-") + "[0-9a-f]{7}" + re.escape(suffix) + "$")
    for entry in json.loads(listing or "[]"):
        for name in entry.get("names") or []:
            if stale.match(name) and name not in current:
                subprocess.run(["buildah", "rmi", name], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="Dockerfile targets (default: all)")
    parser.add_argument(
        "--local-bases",
        action="store_true",
        help="make stand-in base images locally (images/local-bases.sh) and never pull",
    )
    args = parser.parse_args()
    if not shutil.which("buildah"):
        raise SystemExit("buildah not found: `make images` installs it with apt-get (root)")
    images = [by_target(t) for t in args.targets] if args.targets else list(IMAGES)
    if args.local_bases:
        subprocess.run([str(REPO / "images" / "local-bases.sh"), *base_images()], check=True)
    cpu_problem = torch_cpu_index_problem()
    built, skipped = [], []
    for image in images:
        if image.torch == "cpu" and cpu_problem:
            skipped.append(f"{image.target}: not built, torch CPU wheels come from {cpu_problem}")
            continue
        tags = image.tags()  # once: a commit made during the build must not change them
        seconds = build(image, tags, "never" if args.local_bases else "missing")
        drop_superseded(image, tags)
        built.append(f"{image.target}: {', '.join(tags)} ({seconds:.0f} s)")
    for line in built:
        print(f"built   {line}")
    for line in skipped:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
