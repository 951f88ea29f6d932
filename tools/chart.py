"""The Helm chart's generated files, from this package, so they cannot drift from the code.

- `values.schema.json` and `values.yaml` come from the `ChartValues` model below (the same
  pydantic-to-schema route as the CRD); the chart README's values table too.
- `templates/crds/inferencegraphs.yaml` is `graph.crd.crd_manifest()` wrapped in
  `crds.install` with Helm's ownership metadata (in `templates/`, not `crds/`, so that
  `helm upgrade` upgrades it: Helm never touches `crds/` after the first install).
- `templates/adapter-rules.yaml`: the prometheus-adapter rules for the scalers' metrics.
- `examples/*.yaml` are the graphs under k8s/graphs, for the chart's `examples` value.

`python tools/chart.py` (make render) writes them; `--check` lists what is stale. It is build
tooling, so it lives here and not in the infergraph package: the wheel and the operator image
carry no chart generator.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from infergraph.container_images import DEFAULT_REGISTRY, OPERATOR
from infergraph.graph.crd import crd_manifest
from infergraph.render import ENGINES
from infergraph.render.autoscaling import (
    PODS_METRICS,
    V2_RPS_SERIES,
    once,
    prometheus_adapter_rules,
)

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "infergraph"
GRAPHS = REPO / "k8s" / "graphs"
STORAGE_PATTERN = r"^$|^(gs|s3|az|azure|http|https)://[^\s]+$"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
TABLE_START, TABLE_END = "<!-- values-table:start -->", "<!-- values-table:end -->"


class _Values(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Image(_Values):
    registry: str = Field(DEFAULT_REGISTRY, description="registry and organisation")
    name: str = Field(OPERATOR, description="the operator image")
    tag: str = Field("", description="empty: the chart's appVersion")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class GraphImages(_Values):
    registry: str = Field(
        DEFAULT_REGISTRY, description="registry the node images (MLServer runtimes) come from"
    )
    tag: str = Field("", description="empty: the operator's own version")
    pull_secrets: list[str] = Field(
        default_factory=list,
        description="Secrets (in each graph's namespace) every graph pod pulls the node images "
        "with, for a registry that needs credentials",
    )


class GpuScheduling(_Values):
    """Applied by the operator to every graph pod that asks for nvidia.com/gpu."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="GPU node labels")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(GPU_TOLERATION)], description="GPU node taints tolerated"
    )
    affinity: dict[str, Any] = Field(default_factory=dict, description="pod affinity rules")
    runtime_class_name: str = Field("", description="e.g. nvidia; empty: the cluster default")


class Crds(_Values):
    install: bool = Field(True, description="install and upgrade the InferenceGraph CRD")
    keep: bool = Field(
        True, description="helm.sh/resource-policy keep: uninstall leaves the CRD and graphs"
    )


class ServiceAccount(_Values):
    create: bool = True
    name: str = Field("", description="empty: the release's full name")
    annotations: dict[str, str] = Field(default_factory=dict)


class Rbac(_Values):
    create: bool = Field(True, description="ClusterRole(s)/Role(s) and bindings")


class ServiceMonitor(_Values):
    enabled: bool = Field(False, description="a prometheus-operator ServiceMonitor for it")
    interval: str = "30s"
    labels: dict[str, str] = Field(
        default_factory=dict, description="labels your Prometheus selects monitors by"
    )


class Metrics(_Values):
    port: int = Field(8080, ge=1, le=65535, description="operator /metrics port")
    health_port: int = Field(8081, ge=1, le=65535, description="operator /healthz port")
    service_monitor: ServiceMonitor = Field(default_factory=ServiceMonitor)


class ModelSettings(_Values):
    """Seldon v2: the operator serves each Model's model-settings.json (docs/operator.md)."""

    serve: bool = Field(
        True,
        description="Seldon v2 agents copy model-settings.json from the operator (Service "
        "<release>-settings), so edits reach the runtime; false: upload them to storageUri",
    )
    port: int = Field(8082, ge=1, le=65535, description="operator model-settings port")


class PodMonitors(_Values):
    enabled: bool = Field(
        False, description="PodMonitors scraping graph pods (infergraph_* and Seldon metrics)"
    )
    labels: dict[str, str] = Field(default_factory=dict)


class AdapterRules(_Values):
    enabled: bool = Field(
        False, description="ConfigMap of prometheus-adapter rules for the scalers' Pods metrics"
    )


class Prometheus(_Values):
    pod_monitors: PodMonitors = Field(default_factory=PodMonitors)
    adapter_rules: AdapterRules = Field(default_factory=AdapterRules)


class Examples(_Values):
    graphs: list[str] = Field(
        default_factory=list,
        description="example graphs to create once at install, e.g. [cascade] (upgrades leave "
        "them as they are; uninstall leaves them)",
    )
    namespace: str = Field(
        "", description="empty: the release namespace; must be watched (watchNamespaces)"
    )


def _restricted_pod() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


class ChartValues(_Values):
    """Top-level values of charts/infergraph."""

    storage_uri: str = Field(
        "",
        pattern=STORAGE_PATTERN,
        description="Bucket prefix you own for model-settings folders, e.g. "
        "s3://my-bucket/infergraph (gs://, s3://, az://, https://). Required with "
        "modelSettings.serve false; else only graphs with a local checkpoint need it",
    )
    default_engine: Literal[*ENGINES] = Field(  # type: ignore[valid-type]
        "seldon-v2", description="engine for graphs without the infergraph.io/engine annotation"
    )
    watch_namespaces: list[str] = Field(
        default_factory=list,
        description="empty: every namespace (ClusterRole); else Roles in these namespaces only",
    )
    seldon_namespace: str = Field(
        "seldon-mesh",
        pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Seldon Core v2's controller namespace: graphs' ServerConfigs go there, the "
        "only namespace its controller reads them from (with watchNamespaces the chart grants a "
        "Role there, so the namespace must exist); empty: each graph's own namespace, and no "
        "Role (clusters without Seldon v2)",
    )
    drift_interval_seconds: float = Field(
        60.0, gt=0, description="how often children are re-applied and status refreshed"
    )
    settle_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="how often a graph waiting on its children (applied, not yet Ready) is "
        "passed again, so its Ready follows theirs within seconds",
    )
    settle_window_seconds: float = Field(
        600.0,
        ge=0,
        description="for how long, per generation of a graph, from when the operator first "
        "sees it waiting, it is passed that often; after it, at driftIntervalSeconds",
    )
    observe_nodes: bool = Field(
        False,
        description="let the operator read every Node and Pod (a read-only ClusterRole) for "
        "what a node of each instance type leaves a new pod after its DaemonSets: the "
        "Schedulable condition and the price then follow the cluster, re-read every 5 minutes "
        "(Pods a page of 500 at a time, only DaemonSet and mirror pods kept)",
    )
    price_catalog: str = Field(
        "",
        description="a price-catalog override in catalog.yaml's layout (`classes:`): your "
        "prices, or what `infergraph node-catalog` writes from your Nodes (each type's "
        "allocatable less its DaemonSets). `--set-file priceCatalog=FILE`; the operator's "
        "status.pricePerHour and Schedulable condition use it; empty: list prices and the "
        "providers' default reservations",
    )
    global_: dict[str, Any] = Field(
        default_factory=dict,
        alias="global",
        description="values a parent chart shares with all its subcharts (Helm passes them to "
        "every subchart); this chart reads none",
    )
    image: Image = Field(default_factory=Image)
    image_pull_secrets: list[dict[str, str]] = Field(default_factory=list)
    graph_images: GraphImages = Field(default_factory=GraphImages)
    gpu_scheduling: GpuScheduling = Field(default_factory=GpuScheduling)
    crds: Crds = Field(default_factory=Crds)
    service_account: ServiceAccount = Field(default_factory=ServiceAccount)
    rbac: Rbac = Field(default_factory=Rbac)
    resources: dict[str, Any] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        description="operator container resources",
    )
    pod_security_context: dict[str, Any] = Field(
        default_factory=_restricted_pod,
        description="restricted Pod Security Standard; on OpenShift set runAsUser, runAsGroup "
        "and fsGroup to null so its restricted-v2 SCC assigns the namespace's IDs (the image "
        "runs as any UID)",
    )
    security_context: dict[str, Any] = Field(
        default_factory=_restricted_container, description="restricted Pod Security Standard"
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="operator pod")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="operator pod")
    affinity: dict[str, Any] = Field(default_factory=dict, description="operator pod")
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    metrics: Metrics = Field(default_factory=Metrics)
    model_settings: ModelSettings = Field(default_factory=ModelSettings)
    prometheus: Prometheus = Field(default_factory=Prometheus)
    examples: Examples = Field(default_factory=Examples)


# -- values.schema.json ------------------------------------------------------------------------
def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """Resolve $ref (values have no recursion) and drop titles; Helm reads plain JSON Schema."""
    if isinstance(schema, list):
        return [_inline(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = defs[schema["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _inline(merged, defs)
    return {k: _inline(v, defs) for k, v in schema.items() if k not in ("title", "$defs")}


def values_schema() -> dict[str, Any]:
    raw = ChartValues.model_json_schema(by_alias=True, mode="validation")
    schema = _inline(raw, raw.get("$defs", {}))
    schema["properties"]["examples"]["properties"]["graphs"]["items"]["enum"] = example_names()
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema}


# -- values.yaml and the README table ----------------------------------------------------------
def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return text.strip().removesuffix("...").strip()


def _walk(model: type[BaseModel], instance: BaseModel, prefix: str = ""):
    for name, info in model.model_fields.items():
        key = info.alias or name
        value = getattr(instance, name)
        if isinstance(value, BaseModel):
            yield prefix + key, None, info.description or type(value).__doc__ or "", True
            yield from _walk(type(value), value, f"{prefix}{key}.")
        else:
            yield prefix + key, value, info.description or "", False


def values_yaml() -> str:
    lines = [
        "# Values of the infergraph chart. Generated from ChartValues in tools/chart.py",
        "# (python tools/chart.py); values.schema.json checks what you set.",
    ]
    for path, value, description, nested in _walk(ChartValues, ChartValues()):
        depth = path.count(".")
        indent = "  " * depth
        key = path.rsplit(".", 1)[-1]
        if description:
            lines.extend(f"{indent}# {line}" for line in textwrap.wrap(description, 90))
        if nested:
            lines.append(f"{indent}{key}:")
        elif isinstance(value, dict | list) and value:
            block = yaml.safe_dump(value, default_flow_style=False, sort_keys=False)
            lines.append(f"{indent}{key}:")
            lines.extend(textwrap.indent(block, indent + "  ").rstrip("\n").split("\n"))
        else:
            lines.append(f"{indent}{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def values_table() -> str:
    rows = ["| key | default | description |", "| --- | --- | --- |"]
    for path, value, description, nested in _walk(ChartValues, ChartValues()):
        if not nested:
            default = _flow(value).replace("|", "\\|")
            rows.append(f"| `{path}` | `{default}` | {description} |")
    return "\n".join(rows)


# -- the CRD template and example graphs -------------------------------------------------------
CRD_HEADER = """\
{{- /* Generated from infergraph.graph.crd by `python tools/chart.py`. */ -}}
{{- if .Values.crds.install }}
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %(name)s
  labels:
    {{- include "infergraph.labels" . | nindent 4 }}
  annotations:
    # Helm's ownership metadata: lets `helm upgrade` adopt a CRD applied by hand before.
    meta.helm.sh/release-name: {{ .Release.Name }}
    meta.helm.sh/release-namespace: {{ .Release.Namespace }}
    {{- if .Values.crds.keep }}
    helm.sh/resource-policy: keep
    {{- end }}
"""


def crd_template() -> str:
    manifest = crd_manifest()
    body = yaml.safe_dump({"spec": manifest["spec"]}, sort_keys=False, width=100)
    if "{{" in body:
        raise ValueError("the CRD text contains '{{', which Helm would read as a template")
    return CRD_HEADER % {"name": manifest["metadata"]["name"]} + body + "{{- end }}\n"


ADAPTER_TEMPLATE = """\
{{- /* Generated by `python tools/chart.py` from its adapter_rules(). */ -}}
{{- if .Values.prometheus.adapterRules.enabled }}
# prometheus-adapter rules for the Pods metrics the rendered HPAs ask for. Point
# prometheus-adapter's --config at this ConfigMap's config.yaml, or merge its rules into yours.
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "infergraph.fullname" . }}-adapter-rules
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "infergraph.labels" . | nindent 4 }}
data:
  config.yaml: |
%(rules)s{{- end }}
"""


def _pods_rule(series: str, metric: str, aggregate: str) -> dict[str, Any]:
    return {
        "seriesQuery": f'{series}{{namespace!="",pod!=""}}',
        "resources": {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        },
        "name": {"as": metric},
        "metricsQuery": aggregate,
    }


def adapter_rules() -> dict[str, Any]:
    """Pods metrics for Seldon v1's `hpaSpec` (one rule per `PODS_METRICS`), then the Object
    metrics on Seldon v2 Models from `autoscaling.prometheus_adapter_rules()`, the rules
    `k8s/rendered/seldon-v2/prometheus-adapter-values.yaml` carries."""
    # Each series once however many monitors scrape the pod (autoscaling.once).
    series = "<<.Series>>{<<.LabelMatchers>>}"
    per_pod = f"sum({once(series)}) by (<<.GroupBy>>)"
    rate = f"sum({once(f'rate({series}[1m])')}) by (<<.GroupBy>>)"
    mean = f"avg({once(series)}) by (<<.GroupBy>>)"
    return {
        "rules": [
            _pods_rule(PODS_METRICS["inflight"], PODS_METRICS["inflight"], per_pod),
            _pods_rule(PODS_METRICS["queue"], PODS_METRICS["queue"], per_pod),
            _pods_rule(V2_RPS_SERIES, PODS_METRICS["rps"], rate),
            _pods_rule(PODS_METRICS["gpu"], PODS_METRICS["gpu"], mean),
            *prometheus_adapter_rules()["rules"]["custom"],
        ]
    }


def adapter_template() -> str:
    rules = yaml.safe_dump(adapter_rules(), sort_keys=False, width=1000)
    if "{{" in rules:
        raise ValueError("the adapter rules contain '{{', which Helm would read as a template")
    return ADAPTER_TEMPLATE % {"rules": textwrap.indent(rules, "    ")}


def example_names() -> list[str]:
    return sorted(p.stem for p in GRAPHS.glob("*.yaml"))


def generated_files() -> dict[Path, str]:
    files = {
        CHART / "values.schema.json": json.dumps(values_schema(), indent=2) + "\n",
        CHART / "values.yaml": values_yaml(),
        CHART / "templates" / "crds" / "inferencegraphs.yaml": crd_template(),
        CHART / "templates" / "adapter-rules.yaml": adapter_template(),
    }
    for name in example_names():
        files[CHART / "examples" / f"{name}.yaml"] = (GRAPHS / f"{name}.yaml").read_text()
    readme = CHART / "README.md"
    if readme.exists():
        text = readme.read_text()
        start, end = text.index(TABLE_START), text.index(TABLE_END)
        files[readme] = text[: start + len(TABLE_START)] + "\n" + values_table() + "\n" + text[end:]
    return files


def stale() -> list[str]:
    return [
        str(path.relative_to(REPO))
        for path, text in generated_files().items()
        if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problems = stale()
        for path in problems:
            print(f"stale: {path} (run `python tools/chart.py`)", file=sys.stderr)
        return 1 if problems else 0
    for path, text in generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(generated_files())} chart files under {CHART.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
