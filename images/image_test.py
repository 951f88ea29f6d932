"""`make image-test`: start every built image as a pod would and check what it answers.

- mlserver-runtimes[-cuda]: serves a tiny random-weight DistilBERT checkpoint mounted read-only
  at /mnt/models, as UID 10001, and answers a V2 inference request; its HEALTHCHECK passes.
- async-load-tester: runs a short open-loop load against a real MLServer on 127.0.0.1.
- seldon-components[-cuda]: `seldon-core-microservice` under an arbitrary UID in group 0
  (OpenShift's way), configured by PREDICTIVE_UNIT_* like a SeldonDeployment's container,
  answers a Seldon-protocol prediction; its HEALTHCHECK passes.
- operator: `infergraph --help` runs, kopf's liveness endpoint answers under an arbitrary UID with
  no reachable API server; with an `operator` command on the branch, the image's CMD does too.

Every image: non-root user 10001 in group 0, OCI labels, cache variables under /cache, and
nothing written to the root filesystem (so `readOnlyRootFilesystem: true` holds).

    python images/image_test.py [TARGET ...]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from catalog import IMAGES, Image, by_target
from containers import Container, image_config, inspect

from tests.servers import write_model

RUN_AS = "10001:10001"  # what the rendered pods set (runAsUser/runAsGroup)
ARBITRARY = "1000650000:0"  # an OpenShift-style assigned UID, group 0
MODEL = "sentiment"
LABELS = ("source", "version", "revision", "licenses")
TORCH_BUILD = "import torch; print(torch.__version__, 'CUDA', torch.version.cuda)"
CACHE_ENV = {"HOME": "/cache", "XDG_CACHE_HOME": "/cache", "TMPDIR": "/tmp"}


@dataclass
class Outcome:
    target: str
    checks: list[str] = field(default_factory=list)
    error: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Workspace:
    """Host folders the containers mount: the model repository and per-run scratch volumes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._models: Path | None = None

    def models(self) -> Path:
        """A model repository with one tiny text classifier (built once)."""
        if self._models is None:
            from infergraph.components.text_classification import TextClassifier

            root = self.root / "models"
            checkpoint = TextClassifier.build_checkpoint(root / MODEL / "checkpoint", "tiny")
            uri = f"/mnt/models/{checkpoint.relative_to(root).as_posix()}"
            write_model(root, MODEL, "text-classification", uri, max_batch_size=4, device="cpu")
            # safetensors writes 0600; a storage initializer leaves files the pod user can read.
            for path in root.rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            self._models = root
        return self._models

    def volume(self, name: str, user: str) -> str:
        """An emptyDir stand-in owned by the pod's group with group rights (what fsGroup does)."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        gid = int(user.split(":")[1])
        os.chown(path, 0, gid)
        path.chmod(0o2770)
        return str(path)

    def scratch(self, user: str) -> dict[str, str]:
        return {"/tmp": self.volume("tmp", user), "/cache": self.volume("cache", user)}


# -- checks every image gets ---------------------------------------------------------------------
def check_config(image: Image, outcome: Outcome) -> None:
    config = image_config(image.ref())
    assert config.get("User") == "10001:0", f"USER is {config.get('User')!r}, not 10001:0"
    labels = config.get("Labels") or {}
    missing = [k for k in LABELS if not labels.get(f"org.opencontainers.image.{k}")]
    assert not missing, f"OCI labels missing: {missing}"
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    wrong = {k: env.get(k) for k, v in CACHE_ENV.items() if env.get(k) != v}
    assert not wrong, f"cache/scratch variables not under /cache and /tmp: {wrong}"
    history = json.dumps(inspect(image.ref()).get("Docker", {}).get("history", []))
    leaked = [w for w in ("PASSWORD", "TOKEN", "SECRET", "API_KEY") if w in history.upper()]
    assert not leaked, f"build history mentions {leaked}"
    outcome.checks.append(
        f"user 10001:0, labels {labels['org.opencontainers.image.version']}"
        f"@{labels['org.opencontainers.image.revision'][:7]}, caches under /cache"
    )


def check_root_untouched(container: Container, outcome: Outcome) -> None:
    written = container.root_writes()
    assert not written, f"wrote to the root filesystem (read-only in a pod): {written[:10]}"
    outcome.checks.append("root filesystem untouched")


def check_healthcheck(image: Image, env: dict[str, str], outcome: Outcome) -> None:
    """Run the image's HEALTHCHECK command (a second container, same network) while it serves."""
    test = (image_config(image.ref()).get("Healthcheck") or {}).get("Test") or []
    assert test[:1] == ["CMD"], f"HEALTHCHECK is {test!r}"
    with Container(image.ref(), env=env) as probe:
        result = probe.run(test[1:], timeout=60)
    assert result.returncode == 0, f"HEALTHCHECK failed: {result.stderr[-2000:]}"
    outcome.checks.append(f"HEALTHCHECK {' '.join(test[1:])} passes")


# -- per image -----------------------------------------------------------------------------------
@contextmanager
def mlserver_container(image: Image, ws: Workspace, user: str, outcome: Outcome):
    ports = {k: str(free_port()) for k in ("HTTP", "GRPC", "METRICS")}
    env = {f"MLSERVER_{k}_PORT": v for k, v in ports.items()}
    volumes = {"/mnt/models": f"{ws.models()}:ro", **ws.scratch(user)}
    log = ws.root / f"{image.target}.log"
    with Container(image.ref(), user=user, volumes=volumes, env=env, log=log) as ctr:
        started = time.monotonic()
        ctr.start(ctr.entrypoint())
        url = f"http://127.0.0.1:{ports['HTTP']}"
        ctr.wait_http(f"{url}/v2/models/{MODEL}/ready", timeout=600)
        outcome.checks.append(f"mlserver ready in {time.monotonic() - started:.0f} s as {user}")
        yield ctr, url, env
        ctr.stop()
        check_root_untouched(ctr, outcome)


def test_mlserver(image: Image, ws: Workspace, outcome: Outcome, _: list[Image]) -> None:
    with mlserver_container(image, ws, RUN_AS, outcome) as (ctr, url, env):
        texts = ["the film was wonderful", "a dull, tedious plot"]
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}]}
        response = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, timeout=120)
        assert response.status_code == 200, response.text
        out = {o["name"]: o for o in response.json()["outputs"]}
        assert out["label"]["shape"] == [2], out
        assert set(out["label"]["data"]) <= {"NEGATIVE", "POSITIVE"}, out["label"]
        outcome.checks.append(f"V2 infer -> labels {out['label']['data']}")
        torch = ctr.run(["python", "-c", TORCH_BUILD])
        outcome.checks.append(f"torch {torch.stdout.strip()}")
        check_healthcheck(image, env, outcome)


def test_load_tester(image: Image, ws: Workspace, outcome: Outcome, _: list[Image]) -> None:
    """The load tester image, entrypoint and all, against a real MLServer on loopback (this
    machine's .venv serving the same tiny model)."""
    from tests.servers import mlserver

    models = ws.root / "host-models"
    shutil.copytree(ws.models(), models)
    for settings in models.glob("*/model-settings.json"):
        host_path = str(settings.parent / "checkpoint")
        settings.write_text(
            settings.read_text().replace(f"/mnt/models/{MODEL}/checkpoint", host_path)
        )
    with mlserver(models) as server, Container(image.ref(), volumes=ws.scratch(RUN_AS)) as ctr:
        args = ["run", "--target", server.url, "--model", MODEL, "--payload", "synthetic:text",
                "--input-name", "text", "--rate", "4", "--duration", "4", "--warmup", "1",
                "--json", "--no-progress"]  # fmt: skip
        result = ctr.run(ctr.entrypoint(args), timeout=180)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        steps = json.loads(result.stdout)["steps"]
        ok = sum(int(step["ok"]) for step in steps)
        errors = sum(sum(step["errors"].values()) for step in steps)
        assert ok > 0 and errors == 0, f"load result: {result.stdout[-1500:]}"
        outcome.checks.append(f"{ok} V2 requests ok, 0 errors against {server.url} (host MLServer)")
        check_root_untouched(ctr, outcome)


def test_seldon(image: Image, ws: Workspace, outcome: Outcome, _: list[Image]) -> None:
    ws.models()
    checkpoint = ws.root / "models" / MODEL / "checkpoint"
    ports = {k: str(free_port()) for k in ("HTTP", "GRPC", "METRICS")}
    params = [
        {"name": "node", "type": "STRING", "value": MODEL},
        {"name": "family", "type": "STRING", "value": "text-classification"},
        {"name": "model_uri", "type": "STRING", "value": "/mnt/models"},
        {"name": "device", "type": "STRING", "value": "cpu"},
    ]
    env = {f"PREDICTIVE_UNIT_{k}_SERVICE_PORT": v for k, v in ports.items()}
    env |= {"PREDICTIVE_UNIT_PARAMETERS": json.dumps(params), "PREDICTIVE_UNIT_ID": MODEL}
    volumes = {"/mnt/models": f"{checkpoint}:ro", **ws.scratch(ARBITRARY)}
    log = ws.root / f"{image.target}.log"
    with Container(image.ref(), user=ARBITRARY, volumes=volumes, env=env, log=log) as ctr:
        started = time.monotonic()
        ctr.start(ctr.entrypoint())
        url = f"http://127.0.0.1:{ports['HTTP']}"
        ctr.wait_http(f"{url}/health/ping", timeout=600)
        outcome.checks.append(
            f"seldon-core-microservice up in {time.monotonic() - started:.0f} s as {ARBITRARY}"
        )
        body = {"jsonData": {"text": ["the film was wonderful"]}}
        response = httpx.post(f"{url}/api/v1.0/predictions", json=body, timeout=120)
        assert response.status_code == 200, response.text
        data = response.json()["jsonData"]
        label = data.get(f"{MODEL}.label") or data.get("label")
        assert label and label["data"][0] in {"NEGATIVE", "POSITIVE"}, data
        outcome.checks.append(f"Seldon predict -> {label['data']}")
        bad = httpx.post(f"{url}/api/v1.0/predictions", json={"jsonData": {}}, timeout=60)
        assert 400 <= bad.status_code < 500, f"empty jsonData answered {bad.status_code}"
        outcome.checks.append(f"bad request -> {bad.status_code}, server stays up")
        check_healthcheck(image, env, outcome)
        ctr.stop()
        check_root_untouched(ctr, outcome)


def test_operator(image: Image, ws: Workspace, outcome: Outcome, _: list[Image]) -> None:
    kubeconfig = ws.root / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(port=free_port()))  # nothing listens there
    kubeconfig.chmod(0o644)
    operator_file = ws.root / "probe_operator.py"
    operator_file.write_text(PROBE_OPERATOR)
    operator_file.chmod(0o644)
    volumes = {**ws.scratch(ARBITRARY), "/probe": f"{ws.root}:ro"}
    env = {"KUBECONFIG": "/probe/kubeconfig"}
    log = ws.root / f"{image.target}.log"
    with Container(image.ref(), user=ARBITRARY, volumes=volumes, env=env, log=log) as ctr:
        result = ctr.run(ctr.entrypoint(["--help"]), timeout=120)
        assert result.returncode == 0 and "Usage" in result.stdout, result.stderr[-2000:]
        outcome.checks.append(f"`infergraph --help` runs as {ARBITRARY}")
        kopf = ctr.run(["python", "-c", "import kopf, torch"], timeout=60)
        assert "No module named 'torch'" in kopf.stderr, kopf.stderr[-1000:]
        outcome.checks.append("kopf imports, torch is absent")
        # The image's kopf serves its liveness endpoint under an arbitrary UID while the API
        # server is unreachable (what a pod sees before it can list its resources).
        port = free_port()
        liveness = ["--standalone", "-A", f"--liveness=http://0.0.0.0:{port}/healthz"]
        ctr.start(["kopf", "run", "/probe/probe_operator.py", *liveness])
        ctr.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        ctr.stop()
        outcome.checks.append(f"kopf liveness /healthz answers 200 (port {port})")
        if re.search(r"^\W*operator\b", result.stdout, re.MULTILINE):
            operator_liveness(ctr, outcome)
        else:
            outcome.checks.append("no `operator` command on this branch: CMD not started")
        check_root_untouched(ctr, outcome)


def operator_liveness(ctr: Container, outcome: Outcome) -> None:
    """The image's CMD (`infergraph operator`): kopf's liveness endpoint on port 8081."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8081)) == 0:
            raise AssertionError("port 8081 is taken on this machine: liveness not checked")
    ctr.start(ctr.entrypoint())
    ctr.wait_http("http://127.0.0.1:8081/healthz", timeout=120)
    ctr.stop()
    outcome.checks.append("`infergraph operator` liveness :8081/healthz answers 200")


PROBE_OPERATOR = """import kopf


@kopf.on.startup()
def started(**_):
    pass
"""

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{{name: none, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: none, user: {{token: image-test}}}}]
contexts: [{{name: none, context: {{cluster: none, user: none}}}}]
current-context: none
"""

TESTS: dict[str, Callable[[Image, Workspace, Outcome, list[Image]], None]] = {
    "mlserver-runtimes": test_mlserver,
    "seldon-components": test_seldon,
    "operator": test_operator,
    "async-load-tester": test_load_tester,
}


def built(image: Image) -> bool:
    try:
        inspect(image.ref())
    except LookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    if not shutil.which("buildah"):
        raise SystemExit("buildah not found: `make image-test` installs it with apt-get (root)")
    wanted = [by_target(t) for t in argv] if argv else list(IMAGES)
    present = [i for i in wanted if built(i)]
    for image in wanted:
        if image not in present:
            print(f"skip {image.target}: {image.ref()} is not built (make images)")
    outcomes = []
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="image-test-")))
        root.chmod(0o755)
        ws = Workspace(root)
        for image in present:
            outcome = Outcome(image.target)
            outcomes.append(outcome)
            try:
                check_config(image, outcome)
                test = TESTS.get(image.name)
                if test:
                    test(image, ws, outcome, present)
            except Exception as exc:  # one image failing must not hide the others' results
                outcome.error = f"{type(exc).__name__}: {exc}"
            report(outcome)
    failed = [o.target for o in outcomes if o.error]
    if not outcomes:
        print("no image built: run `make images` first")
        return 1
    print(f"\n{len(outcomes) - len(failed)}/{len(outcomes)} images pass" + (
        f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


def report(outcome: Outcome) -> None:
    status = "FAIL" if outcome.error else "ok"
    print(f"[{status}] {outcome.target}")
    for check in outcome.checks:
        print(f"       - {check}")
    if outcome.error:
        print(f"       ! {outcome.error}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
