"""Every rendered scaling query evaluated by a real Prometheus over real runtime processes.

Debian's `prometheus` scrapes a real `mlserver start` running our runtime (which exports
`infergraph_*`) under the target labels each engine gives the pod, plus two in-process
exporters that stand in for the Go processes we cannot run here (the Seldon v2 agent's
`seldon_model_infer_total` and the Seldon v1 executor's request histogram), with the series
names and labels of their source. The queries are asked through Prometheus's HTTP API at
idle, under load, and as a minute after the load stopped, as KEDA and prometheus-adapter
would ask them.

Target labels, as prometheus-operator writes them for a PodMonitor: `namespace` and `pod`
from the pod, `job` = `<monitor namespace>/<monitor name>`
(prometheus-operator pkg/prometheus/promcfg.go, generatePodMonitorConfig). Pod names:
- Seldon v2: a Server is a StatefulSet named after it (sc2:operator/controllers/reconcilers/
  server/statefulset_reconciler.go:68-70), so its pods are `<server>-<ordinal>`.
- KServe Standard mode: Deployment `<isvc>-predictor` (ks:pkg/constants/constants.go
  PredictorServiceName), pods `<deployment>-<template hash>-<id>`.
- Seldon v1: Deployment `<sdep>-<predictor>-<componentSpec index>-<metadata.name>`
  (sc1:operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go:120-136).
"""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from infergraph.render import ENGINES, render
from tests.servers import free_port, mlserver, stop, v2_input, write_model
from tests.test_render_scaling import GRAPHS, OPTIONS, prometheus_queries, shipped
from tools import chart as chart_files

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="Debian's prometheus binary is not installed (`apt-get install -y prometheus`; "
    "`make unit` installs it)",
)

NS = "default"
V2_POD = "cascade-accurate-0"
PLUMBING_POD = "cascade-plumbing-0"
KSERVE_POD = "cascade-accurate-predictor-5d8f7c9b4-x2x7q"
V1_POD = "cascade-default-2-cascade-accurate-7d9c8f6b5-x2x7q"
EXECUTOR_POD = "cascade-default-svc-orch-6c9d7f8b9-k4k2p"
KIT_JOB = f"{NS}/cascade-metrics"  # the rendered PodMonitor <graph>-metrics
SELDON_JOB = "seldon-mesh/agent"
CONDITION = {
    "op": "gt",
    "value": 0.5,
    "reduce": "max",
}  # Seldon's own agent PodMonitor, scraping the same pods


# Another namespace's v2 Server pod serving a Model of the same name (`cascade-accurate`,
# loaded as `cascade-accurate_1`), its runtime's gauges held at values the cascade's own never
# reads at rest: an adapter rule that does not keep to the HPA's namespace hands them over.
OTHER_NS = "prod"
OTHER_NS_GAUGES = {"infergraph_inflight_requests": 7.0, "infergraph_batch_queue_size": 11.0}


@dataclass
class Stubs:
    """Stand-ins for the Go exporters: same series names and labels as their source."""

    agent: Counter  # sc2:scheduler/pkg/metrics/agent.go:35, 222
    executor: Histogram  # sc1:executor/api/metric/client.go:30-34, constants.go
    agent_port: int
    executor_port: int
    other_ns_port: int  # OTHER_NS's runtime (src/infergraph/serving/metrics.py gauges)

    def pipeline_request(self, passed: bool) -> None:
        """One cascade request as the v2 agents count it: `fast` on its Server, the gate on
        the plumbing Server, and the pass-through there when the fast answer holds."""
        self._count("cascade-fast", "cascade-fast")
        self._count("cascade-gate-0", "cascade-plumbing")
        if passed:
            self._count("cascade-pass-0", "cascade-plumbing")

    def _count(self, model: str, server: str) -> None:
        self.agent.labels(
            server=server,
            server_replica="0",
            model=model,
            model_internal=f"{model}_1",
            method_type="grpc",
            code="OK",
        ).inc()

    def executor_call(self, unit: str) -> None:
        self.executor.labels(
            service="predictions",
            method="post",
            code="200",
            deployment_name="cascade",
            predictor_name="default",
            predictor_version="",
            model_name=unit,
            model_image="",
            model_version="",
        ).observe(0.01)


def start_stubs() -> Stubs:
    agent_reg, executor_reg = CollectorRegistry(), CollectorRegistry()
    agent = Counter(
        "seldon_model_infer",
        "agent infer counter",
        ["server", "server_replica", "model", "model_internal", "method_type", "code"],
        registry=agent_reg,
    )
    executor = Histogram(
        "seldon_api_executor_client_requests_seconds",
        "executor client requests",
        [
            "service",
            "method",
            "code",
            "deployment_name",
            "predictor_name",
            "predictor_version",
            "model_name",
            "model_image",
            "model_version",
        ],
        registry=executor_reg,
    )
    other_reg = CollectorRegistry()
    for series, value in OTHER_NS_GAUGES.items():
        gauge = Gauge(series, "another namespace's runtime", ["model"], registry=other_reg)
        gauge.labels(model="cascade-accurate_1").set(value)
    agent_port, executor_port, other_ns_port = free_port(), free_port(), free_port()
    start_http_server(agent_port, addr="127.0.0.1", registry=agent_reg)
    start_http_server(executor_port, addr="127.0.0.1", registry=executor_reg)
    start_http_server(other_ns_port, addr="127.0.0.1", registry=other_reg)
    return Stubs(agent, executor, agent_port, executor_port, other_ns_port)


def _target(port: int, namespace: str, pod: str) -> dict:
    return {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": namespace, "pod": pod}}


# One MLServer process stands for each engine's pod: keep on each pod only the models that
# pod would serve (the v2 server pod the agent's `<model>_<version>`, the others theirs).
ONE_RUNTIME_PER_POD = [
    {"source_labels": ["pod", "model"], "regex": f"{V2_POD};cascade-[a-z0-9-]+", "action": "drop"},
    {"source_labels": ["pod", "model"], "regex": f"({KSERVE_POD}|{V1_POD});.+_1", "action": "drop"},
]


def scrape_config(runtime_port: int, stubs: Stubs) -> dict:
    """The kit's monitor, Seldon's own monitor on the same v2 pods (double scrape), and the
    same graph name in another namespace (which no query may count)."""
    kit = [
        _target(runtime_port, NS, V2_POD),
        _target(runtime_port, NS, KSERVE_POD),
        _target(runtime_port, NS, V1_POD),
        _target(stubs.agent_port, NS, PLUMBING_POD),
        _target(stubs.executor_port, NS, EXECUTOR_POD),
    ]
    seldon = [_target(runtime_port, NS, V2_POD), _target(stubs.agent_port, NS, PLUMBING_POD)]
    staging = [
        _target(runtime_port, "staging", V2_POD),
        _target(runtime_port, "staging", KSERVE_POD),
        _target(stubs.agent_port, "staging", PLUMBING_POD),
        _target(stubs.executor_port, "staging", EXECUTOR_POD),
    ]
    other = [_target(stubs.other_ns_port, OTHER_NS, V2_POD)]
    jobs = {
        KIT_JOB: kit,
        SELDON_JOB: seldon,
        "staging/cascade-metrics": staging,
        f"{OTHER_NS}/cascade-metrics": other,
    }
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "honor_labels": False,
                "static_configs": targets,
                "metric_relabel_configs": ONE_RUNTIME_PER_POD,
            }
            for job, targets in jobs.items()
        ],
    }


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        params = {"query": promql, **({"time": f"{at:.3f}"} if at else {})}
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        assert body["status"] == "success", (promql, body)
        return body["data"]["result"]

    def value(self, promql: str, at: float | None = None) -> float | None:
        """The single value, or None for an empty result (KEDA reads that as 0 by default,
        ignoreNullValues: keda:pkg/scalers/prometheus_scaler.go:56, 267-271)."""
        result = self.query(promql, at)
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Stubs, str]]:
    models = tmp_path_factory.mktemp("runtime")
    # KServe names the MLServer model after the InferenceService; Seldon's agent loads it as
    # `<model>_<version>` (sc2:scheduler/pkg/agent/agent_svc_manager.go:686, 711-716).
    for name in ("cascade-fast", "cascade-gate-0"):
        write_model(models, name, "identity")
    # A batched (not inline) component waiting up to 0.3 s for a batch: under load, rows
    # wait in the runtime's queue and the queue and in-flight gauges read what they count.
    for name in ("cascade-accurate", "cascade-accurate_1"):
        write_model(models, name, "gate", condition=CONDITION, max_batch_size=64,
                    max_batch_time=0.3)  # fmt: skip
    stubs = start_stubs()
    with mlserver(models) as server:
        work = tmp_path_factory.mktemp("prometheus")
        config = work / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(server.metrics_port, stubs)))
        port = free_port()
        assert PROMETHEUS is not None
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            prom = Prometheus(f"http://127.0.0.1:{port}")
            _wait_for_targets(prom, proc)
            yield prom, stubs, server.url
        finally:
            stop(proc)


def _wait_for_targets(prom: Prometheus, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "prometheus exited"
        try:
            # /-/ready answers 503 until the TSDB has started; queries before it are refused.
            ready = httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200
            if ready and prom.value("count(up == 1)") == 12:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("prometheus did not scrape every target")


# -- the rendered queries -------------------------------------------------------------------
def cascade_queries() -> dict[str, str]:
    """`<engine>/<trigger>` -> query for the cascade on every engine (v2 renders the same
    triggers on the Model and the Server: one of each suffices)."""
    out: dict[str, str] = {}
    for engine in ENGINES:
        for _obj, trigger, query in prometheus_queries(render(shipped("cascade"), engine, OPTIONS)):
            out[f"{engine}/{trigger}"] = query
    return out


def with_job(query: str, job: str) -> str:
    """The same query over one monitor's scrape only."""
    query = query.replace(f'namespace="{NS}"', f'namespace="{NS}",job="{job}"')
    return query.replace('namespace!=""', f'namespace!="",job="{job}"')


Read = Callable[[str, float], float | None]


def assert_counted_once(read: Read, query: str) -> None:
    """At one instant the query reads within what each monitor's scrape alone reads: never
    their sum (Seldon's monitor beside the kit's), never another namespace's series too."""
    at = time.time()
    value = read(query, at)
    alone = [
        v for job in (KIT_JOB, SELDON_JOB) if (v := read(with_job(query, job), at)) is not None
    ]
    assert value is not None and alone, (query, value, alone)
    assert min(alone) - 1e-9 <= value <= max(alone) + 1e-9, (query, value, alone)


def is_wake(key: str, query: str) -> bool:
    return key.endswith("-wake") or query.endswith("> bool 0")


class Load:
    """Clients calling the real runtime's models, and the stand-in exporters counting the
    same requests as the v2 agent and the v1 executor would, until stopped."""

    def __init__(self, url: str, stubs: Stubs, workers: int = 8) -> None:
        self.url, self.stubs, self.workers = url, stubs, workers
        self.done = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.futures: list[concurrent.futures.Future[int]] = []

    def _client(self, index: int) -> int:
        model = ("cascade-accurate", "cascade-accurate_1")[index % 2]
        body = {"inputs": [v2_input("input", "FP32", [1.0, 2.0], [1, 2])]}
        value = {"inputs": [v2_input("value", "FP32", [0.7], [1])]}
        sent = 0
        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                for name in ("cascade-fast", "cascade-gate-0", model):
                    payload = value if name == model else body
                    resp = client.post(f"{self.url}/v2/models/{name}/infer", json=payload)
                    assert resp.status_code == 200, resp.text
                # Every request is unsure: the gate sends it on, nothing passes through yet.
                self.stubs.pipeline_request(passed=False)
                self.stubs.executor_call("fast")
                sent += 1
        return sent

    def __enter__(self) -> Load:
        self.futures = [self.pool.submit(self._client, i) for i in range(self.workers)]
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        assert all(f.result() > 0 for f in self.futures)
        self.pool.shutdown()


def poll(
    prom: Prometheus, query: str, ok: Callable[[float | None], bool], timeout: float = 20
) -> float | None:
    """Ask until `ok(value)` holds (a gauge is only as fresh as its last request)."""
    deadline = time.monotonic() + timeout
    value = prom.value(query)
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(0.5)
        value = prom.value(query)
    return value


# -- prometheus-adapter, as its source answers an HPA ----------------------------------------
# pa: kubernetes-sigs/prometheus-adapter @01919d0. An HPA's Object metric is `GetMetricByName`
# (pa:pkg/custom-provider/provider.go:163-192), a Pods metric `GetMetricBySelector` (:194-211):
# both build the rule's query for the object(s) and key the rows with `MatchValuesToNames`.
@dataclass(frozen=True)
class AdapterRule:
    metric: str  # what the HPA asks for (`name.as`)
    series: str
    resource_label: str  # the label naming the described object ("model", "pod")
    template: str  # `metricsQuery`


def chart_adapter_rules() -> list[AdapterRule]:
    out = []
    for rule in chart_files.adapter_rules()["rules"]:
        overrides = rule["resources"]["overrides"]
        (label,) = (k for k, v in overrides.items() if v["resource"] != "namespace")
        series = rule["seriesQuery"].split("{")[0]
        out.append(AdapterRule(rule["name"]["as"], series, label, rule["metricsQuery"]))
    return out


def template_args(rule: AdapterRule, namespace: str, name: str) -> dict[str, Any]:
    """`queryTemplateArgs` as `metricsQuery.Build` fills them for one object in a namespace
    (pa:pkg/naming/metrics_query.go:96-102, 110-156; `QueryForSeries` passes no extra
    group-by, pa:pkg/naming/metric_namer.go:129-131): the namespace's matcher, then the
    resource's (:113-124, 137-144), `LabelValuesByName` keyed by label name (:144, 279),
    and `GroupBy` the resource's label alone (:146-148)."""
    return {
        "Series": rule.series,
        "LabelMatchers": f'namespace="{namespace}",{rule.resource_label}="{name}"',
        "LabelValuesByName": {"namespace": namespace, rule.resource_label: name},
        "GroupBy": rule.resource_label,
    }


def expand(template: str, args: dict[str, Any]) -> str:
    """Go's text/template with `<<`/`>>` delimiters (metrics_query.go:54) for the two
    actions a rule may use here: a field (`<<.Series>>`) and `<<index .Map "key">>`, which
    gives the zero value ("") for a key the map lacks."""

    def action(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if indexed := re.fullmatch(r'index \.(\w+) "([^"]*)"', expr):
            return str(args[indexed.group(1)].get(indexed.group(2), ""))
        assert re.fullmatch(r"\.\w+", expr), f"template action not modelled: {expr}"
        return str(args[expr[1:]])

    return re.sub(r"<<(.*?)>>", action, template)


def match_values_to_names(rows: list[dict], label: str) -> dict[str, float]:
    """`MatchValuesToNames`: each row keyed by its resource label only, a later row with the
    same name overwriting an earlier one (pa:pkg/custom-provider/series_registry.go:171-202,
    :198); no other label, the namespace included, is looked at."""
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in rows}


def adapter_read(
    prom: Prometheus, rule: AdapterRule, namespace: str, name: str, at: float | None = None
) -> float | None:
    """What the adapter hands the HPA for object `name` in `namespace`: None for its
    not-found (no rows, or none keyed by the name; provider.go:170-188)."""
    query = expand(rule.template, template_args(rule, namespace, name))
    return match_values_to_names(prom.query(query, at), rule.resource_label).get(name)


def adapter_object(rule: AdapterRule) -> str:
    """The object each rule's HPA describes here: a v2 Model (its agent counter or its
    runtime's gauges), or a v1 pod."""
    if rule.resource_label == "model":
        return "cascade-fast" if rule.series.startswith("seldon_") else "cascade-accurate"
    return PLUMBING_POD if rule.series.startswith("seldon_") else V1_POD


def test_every_rendered_query_is_valid_promql(
    stack: tuple[Prometheus, Stubs, str],
) -> None:
    """No query in any rendered file goes unasked: Prometheus parses and evaluates each."""
    prom, _, _ = stack
    asked = 0
    for path in sorted(GRAPHS.glob("*.yaml")):
        for engine in ENGINES:
            for _obj, _trigger, query in prometheus_queries(
                render(shipped(path.stem), engine, OPTIONS)
            ):
                prom.query(query)
                asked += 1
    for rule in chart_adapter_rules():
        prom.query(expand(rule.template, template_args(rule, NS, adapter_object(rule))))
    assert asked > 20


def zero(value: float | None) -> bool:
    return not value


def test_queries_read_idle_load_and_after(stack: tuple[Prometheus, Stubs, str]) -> None:
    """Idle: every query reads 0 (wake queries a real 0, never empty). Under load with every
    request unsure and no pass-through series yet: each query is positive, counted once and
    in its own namespace, and the wake reads 1. A minute after: everything back to 0."""
    prom, stubs, url = stack
    queries = cascade_queries()
    assert {"seldon-v2/accurate-wake", "kserve/external-1", "seldon-v1/accurate-queue"} <= set(
        queries
    )
    for key, query in queries.items():
        value = prom.value(query)
        assert zero(value), (key, query, value)
        assert value is not None or not is_wake(key, query), (key, "empty wake reads as 0")
    with Load(url, stubs):
        for key, query in queries.items():
            value = poll(prom, query, lambda v: bool(v))
            assert value and value > 0, (key, query, value)
            if is_wake(key, query):
                assert value == 1, (key, query, value)
            assert_counted_once(lambda q, at: prom.value(q, at), query)
        _check_adapter_rules(prom)
        # What the unguarded difference read: empty (so 0) while the pass side has no series.
        unguarded = queries["seldon-v2/accurate-wake"].replace(" or vector(0)", "")
        assert prom.value(unguarded.removesuffix(" > bool 0")) is None
    ended = time.time()
    for key, query in queries.items():
        # Counters as asked a minute after the last request; gauges the runtime sets back
        # when its requests finish.
        value = prom.value(query, at=ended + 61) if "rate(" in query else poll(prom, query, zero)
        assert zero(value), (key, query, value)
        assert value is not None or not is_wake(key, query), key


def _check_adapter_rules(prom: Prometheus) -> None:
    """Under load every adapter rule with an exporter here reads positive, counted once."""
    for rule in chart_adapter_rules():
        if rule.metric == "DCGM_FI_DEV_GPU_UTIL":
            continue  # NVIDIA's DCGM exporter: no GPU here, asked for validity above
        name = adapter_object(rule)
        value = adapter_read(prom, rule, NS, name)
        deadline = time.monotonic() + 15
        while not value and time.monotonic() < deadline:
            time.sleep(0.5)
            value = adapter_read(prom, rule, NS, name)
        assert value and value > 0, (rule, value)
        query = expand(rule.template, template_args(rule, NS, name))

        def read(q: str, at: float, rule: AdapterRule = rule, name: str = name) -> float | None:
            rows = match_values_to_names(prom.query(q, at), rule.resource_label)
            return rows.get(name)

        assert_counted_once(read, query)


def test_object_metrics_read_the_hpas_own_namespace(stack: tuple[Prometheus, Stubs, str]) -> None:
    """Model `cascade-accurate` runs in NS and in OTHER_NS: the Object metric the adapter hands
    each namespace's HPA is that namespace's, never the other's (the adapter keys rows by the
    model's name alone, so only the rule's query can keep to the namespace)."""
    prom, _, _ = stack
    by_series = {r.series: r for r in chart_adapter_rules() if r.resource_label == "model"}
    for series, held in OTHER_NS_GAUGES.items():
        rule = by_series[series]
        scraped = poll(prom, f'{series}{{namespace="{OTHER_NS}"}}', lambda v, h=held: v == h)
        assert scraped == held
        assert adapter_read(prom, rule, OTHER_NS, "cascade-accurate") == held, rule
        own = prom.value(
            f'sum(max without (job) ({series}{{namespace="{NS}",model="cascade-accurate_1"}}))'
        )
        assert adapter_read(prom, rule, NS, "cascade-accurate") == own, rule
