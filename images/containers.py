"""Run a built image with buildah the way a pod would, and see what it wrote to its root.

`buildah run --isolation chroot` shares the host network, so a server in the container answers
on 127.0.0.1. buildah has no read-only root flag; instead the container's overlay upper layer
is read after the run: anything written there is something a read-only root would refuse.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Where buildah puts mount points for -v and the files it generates for every run; empty
# files or folders at these paths are the runtime's doing, not the image's.
RUNTIME_PATHS = ("etc/hosts", "etc/resolv.conf", "etc/hostname", "run", "dev", "proc", "sys")


def inspect(image: str) -> dict[str, Any]:
    out = subprocess.run(
        ["buildah", "inspect", "--type", "image", image], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise LookupError(f"{image}: not in buildah's storage ({out.stderr.strip()})")
    return json.loads(out.stdout)


def image_config(image: str) -> dict[str, Any]:
    """The Docker-format config: Entrypoint, Cmd, Env, User, Healthcheck, Labels."""
    return inspect(image)["Docker"]["config"]


@dataclass
class Container:
    """One working container of `image`; `start` runs the entrypoint, `run` a one-off command."""

    image: str
    user: str | None = None
    volumes: dict[str, str] = field(default_factory=dict)  # container path -> host path[:ro]
    env: dict[str, str] = field(default_factory=dict)
    log: Path = Path("/dev/null")
    name: str = field(default_factory=lambda: f"infergraph-image-test-{uuid.uuid4().hex[:8]}")
    process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Container:
        subprocess.run(
            ["buildah", "from", "--pull=never", "--name", self.name, self.image],
            check=True,
            capture_output=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        subprocess.run(["buildah", "umount", self.name], capture_output=True)
        subprocess.run(["buildah", "rm", self.name], capture_output=True)

    def entrypoint(self, args: list[str] | None = None) -> list[str]:
        """ENTRYPOINT + CMD, or ENTRYPOINT + `args` (what `docker run IMAGE ARGS` runs)."""
        config = image_config(self.image)
        return [*(config.get("Entrypoint") or []), *(args if args is not None else config["Cmd"])]

    def command(self, argv: list[str]) -> list[str]:
        flags = ["--isolation", "chroot"]
        if self.user:
            flags += ["--user", self.user]
        for target, source in self.volumes.items():
            flags += ["-v", f"{source.split(':')[0]}:{target}" + _suffix(source)]
        for key, value in self.env.items():
            flags += ["--env", f"{key}={value}"]
        return ["buildah", "run", *flags, self.name, "--", *argv]

    def start(self, argv: list[str]) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.command(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def run(self, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout)

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.is_file() else ""

    def wait_http(self, url: str, timeout: float) -> httpx.Response:
        """Poll `url` until it answers 200; fail early (with the log) if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.image} exited early:\n{self.output()}")
            try:
                response = httpx.get(url, timeout=3)
                if response.status_code == 200:
                    return response
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{url} not ready after {timeout:.0f}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def root_writes(self) -> list[str]:
        """Files the runs left in the root filesystem (its overlay upper layer)."""
        merged = subprocess.run(
            ["buildah", "mount", self.name], capture_output=True, text=True, check=True
        ).stdout.strip()
        upper = Path(merged).parent / "diff"
        written = []
        for path in sorted(upper.rglob("*")):
            rel = path.relative_to(upper).as_posix()
            if rel.startswith(RUNTIME_PATHS) or rel in self.mount_points():
                continue
            if path.is_dir() and not path.is_symlink():
                continue  # a folder holding a mount point; a written file inside is listed
            written.append(rel)
        return written

    def mount_points(self) -> set[str]:
        return {target.strip("/") for target in self.volumes}


def _suffix(source: str) -> str:
    return ":" + source.split(":", 1)[1] if ":" in source else ""
