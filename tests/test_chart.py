"""charts/infergraph with the real Helm v4 engine (PyPI helm-python-sdk: Helm's Go SDK through
its C ABI, no helm binary): lint, template with the default, GPU and every-option values, every
object checked against the Kubernetes schemas (kubernetes-validate) and the CRDs in ../shared/crds,
pods against the restricted Pod Security Standard, and the values schema's errors."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from infergraph import __version__
from infergraph.graph.crd import crd_manifest
from infergraph.graph.plan import load_graph, parse_graph
from infergraph.operator.config import OperatorConfig
from infergraph.render import ENGINES, render
from infergraph.render.autoscaling import PODS_METRICS
from infergraph.render.common import STORAGE_ANNOTATION
from tests.test_render_schemas import DNS_LABEL, _skip_without_crds, _structural, validate
from tools import chart as chart_files

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "infergraph"
REQUIRED = {"storageUri": "s3://my-bucket/infergraph"}
VALUES_FILES = {
    "default": REQUIRED,
    "gpu": yaml.safe_load((CHART / "ci" / "gpu-values.yaml").read_text()),
    "all": yaml.safe_load((CHART / "ci" / "all-values.yaml").read_text()),
}
RELEASE, NAMESPACE = "ig", "infergraph"


@cache
def loaded() -> helm.Chart:
    return helm.Chart.load(CHART)


def template(values: dict[str, Any], **opts: Any) -> list[dict[str, Any]]:
    """`helm template`: every rendered object (NOTES.txt aside), in file order."""
    out = loaded().render(values, name=RELEASE, namespace=NAMESPACE, **opts)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def notes(values: dict[str, Any]) -> str:
    out = loaded().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def graph_schema() -> dict[str, Any]:
    return _structural(crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def is_subdomain_name_problem(problem: str) -> bool:
    """validate() asks names to be DNS-1123 labels; CRD and RBAC names are DNS-1123
    subdomains (dots allowed), which the API server accepts."""
    if not problem.startswith("metadata.name '"):
        return False
    name = problem.split("'")[1]
    return len(name) <= 253 and all(DNS_LABEL.match(part) for part in name.split("."))


# -- generated files, lint ------------------------------------------------------------------
def test_generated_chart_files_are_up_to_date() -> None:
    assert chart_files.stale() == [], "run `python tools/chart.py` (make render)"


def test_chart_app_version_is_the_package_version() -> None:
    assert loaded().metadata["appVersion"] == __version__


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART, VALUES_FILES[name], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; 1 (info) is only "icon is recommended".
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# -- every rendered object is valid ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_every_rendered_object_is_valid(name: str) -> None:
    _skip_without_crds()
    docs = template(VALUES_FILES[name], is_install=True)
    assert docs
    problems = []
    for doc in docs:
        if doc["kind"] == "InferenceGraph":
            errors = jsonschema.Draft7Validator(graph_schema()).iter_errors(doc)
            problems += [f"InferenceGraph {e.message}" for e in errors]
            parse_graph(doc)  # and the operator's own validation
            continue
        problems += validate(doc)
    assert [p for p in problems if not is_subdomain_name_problem(p)] == []


def test_default_values_create_the_expected_objects() -> None:
    docs = template(REQUIRED)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Pod",
        "Service",
        "Service",
        "ServiceAccount",
    ]


def test_every_option_reaches_its_object() -> None:
    values = VALUES_FILES["all"]
    docs = template(values)
    kinds = {d["kind"] for d in docs}
    assert {"ServiceMonitor", "PodMonitor", "ConfigMap", "InferenceGraph", "Role"} <= kinds
    deployment = by_kind(docs, "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/platform/infergraph-operator:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["serviceAccountName"] == "igraph-operator"
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["securityContext"] == values["podSecurityContext"]
    assert container["resources"] == values["resources"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert values["podAnnotations"].items() <= annotations.items()
    assert set(annotations) - set(values["podAnnotations"]) == {"checksum/price-catalog"}
    assert {p["containerPort"] for p in container["ports"]} == {9090, 9091}
    # The environment the Deployment sets is exactly what the operator reads.
    env = {e["name"]: e["value"] for e in container["env"]}
    config = OperatorConfig.from_env(env)
    assert config.storage_uri == values["storageUri"]
    assert config.default_engine == "seldon-v1"
    assert config.namespaces == ("ml-prod", "ml-staging")
    assert config.drift_interval_s == 30
    assert (config.settle_interval_s, config.settle_window_s) == (2, 120)
    assert (config.metrics_port, config.health_port) == (9090, 9091)
    assert config.seldon_namespace == "seldon-system"
    assert config.price_catalog == "/etc/infergraph/price-catalog/catalog.yaml"
    assert config.observe_nodes is True
    reads = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-nodes")]
    assert [r["rules"] for r in reads] == [
        [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list"]}]
    ]
    (bound,) = [
        b
        for b in by_kind(docs, "ClusterRoleBinding")
        if b["roleRef"]["name"] == reads[0]["metadata"]["name"]
    ]
    assert bound["subjects"][0]["name"] == pod["serviceAccountName"]
    # modelSettings.serve false: no settings server, Seldon v2 Models keep their bucket folders.
    assert config.settings_url is None and config.settings_port == 9092
    assert [s["metadata"]["name"] for s in by_kind(docs, "Service")] == ["ig-infergraph-metrics"]
    options = config.render_options()
    assert options.image_registry == "registry.example.com/platform"
    assert options.image_tag == "0.1.0-rc1"
    gpu = values["gpuScheduling"]
    assert options.gpu_scheduling.node_selector == gpu["nodeSelector"]
    assert options.gpu_scheduling.tolerations == gpu["tolerations"]
    assert options.gpu_scheduling.affinity == gpu["affinity"]
    assert options.gpu_scheduling.runtime_class_name == "nvidia"
    # Namespaced mode: Roles in the listed namespaces, and for ServerConfigs in Seldon's.
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role")}
    assert sorted(roles) == ["ml-prod", "ml-staging", "seldon-system"]
    assert roles["seldon-system"]["rules"] == [
        {
            "apiGroups": ["mlops.seldon.io"],
            "resources": ["serverconfigs"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        }
    ]
    cluster_rules = [rule for r in by_kind(docs, "ClusterRole") for rule in r["rules"]]
    assert not any("inferencegraphs" in rule["resources"] for rule in cluster_rules)
    monitor = by_kind(docs, "ServiceMonitor")[0]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    graphs = by_kind(docs, "InferenceGraph")
    assert sorted(g["metadata"]["name"] for g in graphs) == ["cascade", "nlp"]
    assert {g["metadata"]["namespace"] for g in graphs} == {"ml-staging"}
    crd = by_kind(docs, "CustomResourceDefinition")[0]
    assert "helm.sh/resource-policy" not in crd["metadata"]["annotations"]  # crds.keep false


def test_the_settings_service_reaches_the_operators_settings_server() -> None:
    """Seldon v2 Models name `INFERGRAPH_SETTINGS_URL` in their storageUri: it must be the
    chart's Service, on the port the operator's settings server listens on."""
    docs = template(REQUIRED)
    deployment = by_kind(docs, "Deployment")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    config = OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]})
    service = next(
        s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("settings")
    )
    port = service["spec"]["ports"][0]
    meta = service["metadata"]
    assert config.settings_url == f"http://{meta['name']}.{meta['namespace']}.svc:{port['port']}"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[port["targetPort"]] == config.settings_port == 8082
    selector = service["spec"]["selector"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    # The install notes say where the agents copy from, and that Server pods must reach it.
    assert config.settings_url in notes(REQUIRED)
    assert "upload them there" in notes({**REQUIRED, "modelSettings": {"serve": False}})


def test_gpu_values_reach_the_operator_settings() -> None:
    docs = template(VALUES_FILES["gpu"])
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    config = OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]})
    scheduling = config.render_options().gpu_scheduling
    assert scheduling.node_selector["nvidia.com/gpu.present"] == "true"
    assert scheduling.runtime_class_name == "nvidia"
    assert config.storage_uri == "gs://my-team-models/infergraph"


def test_default_values_give_the_default_operator_settings() -> None:
    container = by_kind(template(REQUIRED), "Deployment")[0]["spec"]["template"]["spec"][
        "containers"
    ][0]
    config = OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]})
    assert config == OperatorConfig(
        storage_uri=REQUIRED["storageUri"],
        gpu_scheduling=config.gpu_scheduling,
        # Seldon's documented install runs its controller in seldon-mesh (the library default,
        # None, keeps ServerConfigs in each graph's namespace).
        seldon_namespace="seldon-mesh",
        settings_url=f"http://ig-infergraph-settings.{NAMESPACE}.svc:8082",
    )
    assert config.gpu_scheduling.tolerations == [chart_files.GPU_TOLERATION]
    assert container["image"] == f"docker.io/infergraph/operator:{__version__}"


# -- restricted Pod Security Standard -----------------------------------------------------------
# The "restricted" profile of https://kubernetes.io/docs/concepts/security/pod-security-standards/
ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    problems = []
    psc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} uses {kinds - ALLOWED_VOLUMES}")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set((sc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            problems.append(f"{name}: hostPort")
    return problems


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = [d["spec"] for d in docs if d["kind"] == "Pod"]
    specs += [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    return specs


@pytest.mark.parametrize("name", sorted(VALUES_FILES))
def test_pods_meet_the_restricted_pod_security_standard(name: str) -> None:
    specs = pod_specs(template(VALUES_FILES[name]))
    assert len(specs) == 2  # the operator and the helm test pod
    for spec in specs:
        assert restricted_violations(spec) == []


def test_the_restricted_checker_rejects_a_root_pod() -> None:
    pod = {"containers": [{"name": "x", "securityContext": {"runAsUser": 0}}], "hostPID": True}
    problems = restricted_violations(pod)
    assert "hostPID is set" in problems
    assert any("runAsUser 0" in p for p in problems)
    assert any("allowPrivilegeEscalation" in p for p in problems)


# -- the CRD stays under Helm's control --------------------------------------------------------
def test_crd_is_a_template_so_upgrades_upgrade_it() -> None:
    # Helm installs crds/ once and never upgrades it; the chart has no crds/ folder.
    assert loaded().crds == [] and not (CHART / "crds").exists()
    for opts in ({"is_install": True}, {"is_upgrade": True, "revision": 2}):
        crd = by_kind(template(REQUIRED, **opts), "CustomResourceDefinition")[0]
        annotations = crd["metadata"]["annotations"]
        assert annotations["meta.helm.sh/release-name"] == RELEASE
        assert annotations["meta.helm.sh/release-namespace"] == NAMESPACE
        assert annotations["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert crd["spec"] == crd_manifest()["spec"]  # the generated CRD, unchanged
    assert (
        by_kind(template({**REQUIRED, "crds": {"install": False}}), "CustomResourceDefinition")
        == []
    )


# -- RBAC covers what the operator applies ----------------------------------------------------
PLURALS = {
    "Model": ("mlops.seldon.io", "models"),
    "Server": ("mlops.seldon.io", "servers"),
    "ServerConfig": ("mlops.seldon.io", "serverconfigs"),
    "Pipeline": ("mlops.seldon.io", "pipelines"),
    "SeldonDeployment": ("machinelearning.seldon.io", "seldondeployments"),
    "ScaledObject": ("keda.sh", "scaledobjects"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "PodMonitor": ("monitoring.coreos.com", "podmonitors"),
    "ServiceMonitor": ("monitoring.coreos.com", "servicemonitors"),
    "InferenceService": ("serving.kserve.io", "inferenceservices"),
    "ServingRuntime": ("serving.kserve.io", "servingruntimes"),
    "InferenceGraph": ("serving.kserve.io", "inferencegraphs"),
}
APPLY_VERBS = {"get", "create", "patch", "delete"}


def test_rbac_covers_every_kind_the_renderers_emit() -> None:
    kinds = set()
    for path in sorted((REPO / "k8s" / "graphs").glob("*.yaml")):
        graph = load_graph(path)
        graph.metadata.annotations[STORAGE_ANNOTATION] = REQUIRED["storageUri"]
        for engine in ENGINES:
            kinds |= {obj["kind"] for obj in render(graph, engine)}
    role = next(
        r
        for r in by_kind(template(REQUIRED), "ClusterRole")
        if "discovery" not in r["metadata"]["name"]
    )
    granted = {
        (group, resource)
        for rule in role["rules"]
        if set(rule["verbs"]) >= APPLY_VERBS
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    missing = {kind for kind in kinds if PLURALS.get(kind) not in granted}
    assert missing == set(), f"ClusterRole lacks apply verbs for {missing}"


def test_adapter_rules_cover_every_pods_metric_the_hpas_use() -> None:
    docs = template({**REQUIRED, "prometheus": {"adapterRules": {"enabled": True}}})
    rules = yaml.safe_load(by_kind(docs, "ConfigMap")[0]["data"]["config.yaml"])["rules"]
    served = {rule["name"]["as"] for rule in rules}
    assert set(PODS_METRICS.values()) <= served


# -- bad values get Helm's clear errors ---------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({**REQUIRED, "defaultEngine": "triton"}, "defaultEngine"),
        ({**REQUIRED, "storageUri": "my-bucket/prefix"}, "storageUri"),
        ({**REQUIRED, "storageURI": "s3://typo"}, "storageURI"),
        ({**REQUIRED, "metrics": {"port": 70000}}, "port"),
        ({**REQUIRED, "examples": {"graphs": ["no-such-graph"]}}, "graphs"),
        ({**REQUIRED, "driftIntervalSeconds": 0}, "driftIntervalSeconds"),
        ({**REQUIRED, "settleIntervalSeconds": 0}, "settleIntervalSeconds"),
        ({**REQUIRED, "settleWindowSeconds": -1}, "settleWindowSeconds"),
    ],
)
def test_values_the_schema_rejects_fail_with_a_clear_error(values: dict, named: str) -> None:
    with pytest.raises(helm.HelmError) as caught:
        loaded().render(values, name=RELEASE, namespace=NAMESPACE)
    assert named in str(caught.value), str(caught.value)


def test_missing_storage_uri_says_how_to_set_it_when_settings_are_uploaded() -> None:
    """`modelSettings.serve: false`: every Seldon v2 Model reads its settings from a bucket
    folder the user uploads, so the install needs the bucket prefix."""
    with pytest.raises(helm.HelmError) as caught:
        loaded().render({"modelSettings": {"serve": False}}, name=RELEASE, namespace=NAMESPACE)
    assert "storageUri is required" in str(caught.value)
    assert "--set storageUri=" in str(caught.value)


def test_storage_uri_is_optional_while_the_operator_serves_settings() -> None:
    """Issue 26: with v2 settings served by the operator (the default) a graph whose nodes load
    hub ids names no bucket on any engine, so the install asks for none; the operator then has
    no prefix and names the missing value only for a graph that needs one (a local checkpoint,
    test_model_settings_served.py::test_a_storage_prefix_is_asked_for_where_an_object_would_name_it)."""
    docs = template({})
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    config = OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]})
    assert config.storage_uri is None
    assert config.settings_url == f"http://ig-infergraph-settings.{NAMESPACE}.svc:8082"
    graph = load_graph(REPO / "k8s" / "graphs" / "cascade.yaml")
    for engine in ENGINES:
        assert render(graph, engine, config.render_options())
    assert "No storageUri is set: graphs whose nodes load hub ids need none" in notes({})


def test_notes_tell_how_to_apply_watch_and_call_a_graph() -> None:
    text = notes(REQUIRED)
    assert "kubectl apply -n <namespace> -f k8s/graphs/cascade.yaml" in text
    assert "kubectl get inferencegraphs.infergraph.io -n <namespace> -w" in text
    assert "{.status.endpoint}" in text
    assert "helm test ig -n infergraph" in text
    assert REQUIRED["storageUri"] in text


# -- lifecycle on a real cluster (issue 26 item 7) ------------------------------------------------
def _grants(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


@pytest.mark.parametrize(
    ("values", "kind"),
    [(REQUIRED, "ClusterRole"), ({**REQUIRED, "watchNamespaces": ["ml"]}, "Role")],
    ids=["cluster-wide", "namespaced"],
)
def test_rbac_lets_the_operator_set_block_owner_deletion(values: dict, kind: str) -> None:
    """The children's ownerReferences say `blockOwnerDeletion: true`; where the
    OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift), that needs `update`
    on the owner's `finalizers` subresource (kubernetes plugin/pkg/admission/gc/gc_admission.go,
    ownerRefToDeleteAttributeRecords: verb update, subresource finalizers)."""
    rules = [rule for role in by_kind(template(values), kind) for rule in role["rules"]]
    assert _grants(rules, "infergraph.io", "inferencegraphs/finalizers", "update")


def test_short_names_do_not_clash_with_kserves_inferencegraph() -> None:
    """KServe's CRD has the same kind and plural and the short name `ig`; with the KServe
    engine both objects exist in one namespace, so `kubectl get ig` must not be ours too."""
    _skip_without_crds()
    kserve = yaml.safe_load(
        (REPO.parent / "shared/crds/kserve/serving.kserve.io_inferencegraphs.yaml").read_text()
    )
    theirs = set(kserve["spec"]["names"].get("shortNames") or [])
    ours = set(crd_manifest()["spec"]["names"]["shortNames"])
    assert theirs and not ours & theirs, ours & theirs


def test_notes_name_the_graph_resource_unambiguously() -> None:
    """`kubectl get inferencegraph cascade` can resolve to KServe's InferenceGraph."""
    text = notes(REQUIRED)
    assert "inferencegraphs.infergraph.io" in text
    assert "inferencegraph cascade" not in text and "inferencegraphs -n" not in text


def test_the_no_kit_crd_file_can_be_adopted_by_the_readmes_helm_install() -> None:
    """Helm adopts an existing object only with the label `app.kubernetes.io/managed-by: Helm`
    and annotations `meta.helm.sh/release-name`/`-namespace` naming the release (helm
    pkg/action/validate.go, checkOwnership; else "invalid ownership metadata"). The file the
    README applies without the kit carries them for the README's `helm install infergraph ...
    -n infergraph`, and the chart renders the same for that release."""
    crd = yaml.safe_load((REPO / "k8s/crds/infergraph.io_inferencegraphs.yaml").read_text())
    readme = (REPO / "README.md").read_text()
    assert "helm install infergraph charts/infergraph -n infergraph" in readme
    meta = crd["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert meta["annotations"]["meta.helm.sh/release-name"] == "infergraph"
    assert meta["annotations"]["meta.helm.sh/release-namespace"] == "infergraph"
    out = loaded().render(REQUIRED, name="infergraph", namespace="infergraph", is_install=True)
    charted = next(
        d
        for path, text in out.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d and d.get("kind") == "CustomResourceDefinition"
    )
    for key in ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace"):
        assert charted["metadata"]["annotations"][key] == meta["annotations"][key]
    assert charted["spec"] == crd["spec"]


def test_images_readme_gives_the_operators_health_port() -> None:
    text = (REPO / "images/README.md").read_text()
    port = OperatorConfig().health_port
    assert f"operator `GET :{port}/healthz`" in text


def test_a_price_catalog_reaches_the_operator(tmp_path: Path) -> None:
    """`--set-file priceCatalog=FILE` (prices, or `infergraph node-catalog`'s output): a
    ConfigMap mounted where INFERGRAPH_PRICE_CATALOG points, which the operator loads for
    status.pricePerHour and Schedulable; a new catalog replaces the operator pod."""
    from infergraph.cost import load_catalog

    text = yaml.safe_dump(
        {
            "classes": {
                "c7i.large": {"allocatable_vcpus": 1.77, "allocatable_memory_gib": 3.2226},
                "g6.xlarge": {"usd_per_hour": 0.55},
            }
        }
    )
    docs = template({**REQUIRED, "priceCatalog": text})
    (config_map,) = by_kind(docs, "ConfigMap")
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    path = Path(
        OperatorConfig.from_env({e["name"]: e["value"] for e in container["env"]}).price_catalog
        or ""
    )
    mount = next(m for m in container["volumeMounts"] if m["name"] == "price-catalog")
    assert path.parent == Path(mount["mountPath"]) and mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "price-catalog")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    copy = tmp_path / path.name
    copy.write_text(config_map["data"][path.name])
    catalog = load_catalog(copy)
    assert catalog.get("c7i.large").allocatable.vcpus == 1.77
    assert catalog.get("g6.xlarge").usd_per_hour == 0.55
    problems = [p for d in docs for p in validate(d) if not is_subdomain_name_problem(p)]
    assert problems == []

    def checksum(values: dict[str, Any]) -> str:
        (rendered,) = by_kind(template(values), "Deployment")
        return rendered["spec"]["template"]["metadata"]["annotations"]["checksum/price-catalog"]

    cheaper = {**REQUIRED, "priceCatalog": text.replace("0.55", "0.5")}
    assert checksum({**REQUIRED, "priceCatalog": text}) != checksum(cheaper)
    plain = template(REQUIRED)
    assert by_kind(plain, "ConfigMap") == []
    env = {
        e["name"]
        for e in by_kind(plain, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "INFERGRAPH_PRICE_CATALOG" not in env
    plain_env = by_kind(plain, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert (
        OperatorConfig.from_env({e["name"]: e["value"] for e in plain_env}).observe_nodes is False
    )
    assert not [
        r for r in by_kind(plain, "ClusterRole") if r["metadata"]["name"].endswith("-nodes")
    ]


# -- review of 2026-12-07: the helm test pod and the chart as a dependency ----------------------
def test_the_helm_test_pod_pulls_and_schedules_as_the_operator_does() -> None:
    """`helm test` runs the operator's image: from a private registry it needs the same pull
    secrets, and on tainted or labelled nodes the same placement, or it waits in
    ImagePullBackOff / Pending until the test times out."""
    docs = template(VALUES_FILES["all"])
    operator = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    test_pod = next(
        d for d in by_kind(docs, "Pod") if d["metadata"]["name"] == "ig-infergraph-test"
    )
    for key in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity"):
        assert operator.get(key), key  # all-values.yaml sets each
        assert test_pod["spec"].get(key) == operator[key], key


def test_the_chart_takes_the_global_values_a_parent_chart_passes() -> None:
    """Helm gives every subchart the parent's `global` values before validating them against
    the subchart's schema: a strict root without `global` refuses every umbrella chart."""
    values = {**REQUIRED, "global": {"imageRegistry": "registry.example.com", "x": {"y": 1}}}
    docs = template(values)
    assert by_kind(docs, "Deployment")


def test_example_graphs_are_created_once_and_only_where_the_operator_watches() -> None:
    """Example graphs are Helm hooks (the CRD must be served before Helm can map them). As
    post-upgrade hooks every `helm upgrade` deleted and recreated them, their children with
    them (before-hook-creation); and an example outside a namespaced operator's
    watchNamespaces was created and never reconciled."""
    values = {**REQUIRED, "examples": {"graphs": ["cascade"]}}
    graph = next(d for d in template(values) if d["kind"] == "InferenceGraph")
    assert graph["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    assert "uninstall leaves" in notes(values)
    watched = {**values, "watchNamespaces": ["ml"]}
    with pytest.raises(helm.HelmError) as caught:
        loaded().render(watched, name=RELEASE, namespace=NAMESPACE)
    assert "examples.namespace" in str(caught.value) and "watchNamespaces" in str(caught.value)
    inside = {**watched, "examples": {"graphs": ["cascade"], "namespace": "ml"}}
    assert any(d["kind"] == "InferenceGraph" for d in template(inside))


def test_readiness_waits_for_the_settings_server_when_it_serves() -> None:
    """The settings Service routes Seldon's agents to the operator pod once it is Ready: with
    the settings served, readiness is the settings server's /readyz (every graph found at the
    start served, tests/test_operator.py), not kopf's /healthz, which answers at once."""
    for serve, path, port in ((True, "/readyz", "settings"), (False, "/healthz", "health")):
        values = {**REQUIRED, "modelSettings": {"serve": serve}}
        pod = by_kind(template(values), "Deployment")[0]["spec"]["template"]["spec"]
        probe = pod["containers"][0]["readinessProbe"]["httpGet"]
        assert (probe["path"], probe["port"]) == (path, port)
        assert pod["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
