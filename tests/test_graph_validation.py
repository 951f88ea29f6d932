"""Every shipped graph validates; every kind of bad graph fails with an error naming the fault."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from infergraph.errors import GraphValidationError
from infergraph.graph.crd import crd_manifest, helm_owned
from infergraph.graph.plan import load_graph, parse_graph

REPO = Path(__file__).resolve().parent.parent
GRAPHS = sorted((REPO / "k8s" / "graphs").glob("*.yaml"))
EXPECTED = {
    "audio-qa",
    "audio-sent",
    "caption",
    "cascade",
    "embed-image",
    "ensemble",
    "nlp",
    "preprocess",
    "sum-qa",
    "video",
    "video-monitoring",
}


def test_all_pipelines_ship() -> None:
    assert {p.stem for p in GRAPHS} == EXPECTED


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.stem)
def test_shipped_graph_is_valid(path: Path) -> None:
    graph = load_graph(path)
    assert graph.name == path.stem
    assert graph.spec.nodes


def _base() -> dict[str, Any]:
    return yaml.safe_load((REPO / "k8s" / "graphs" / "cascade.yaml").read_text())


def _problems(data: dict[str, Any]) -> str:
    with pytest.raises(GraphValidationError) as info:
        parse_graph(data)
    return str(info.value)


def test_unknown_node_reference() -> None:
    data = _base()
    data["spec"]["graph"]["sequence"][0]["node"] = "fastest"
    text = _problems(data)
    assert "unknown node 'fastest'" in text
    assert "spec.graph.sequence[0]" in text


def test_cycle_between_nodes() -> None:
    data = _base()
    data["spec"]["graph"] = {
        "sequence": [
            {"node": "fast", "inputs": {"image": "accurate.label"}},
            {"node": "accurate", "inputs": {"image": "fast.label"}},
        ]
    }
    text = _problems(data)
    assert "accurate" in text and "cycle or order" in text


def test_self_reference_is_a_cycle() -> None:
    data = _base()
    data["spec"]["graph"]["sequence"][0]["inputs"] = {"image": "fast.label"}
    assert "cycle" in _problems(data)


def test_tensor_nobody_produces() -> None:
    data = _base()
    data["spec"]["graph"]["sequence"][1]["when"]["tensor"] = "fast.certainty"
    text = _problems(data)
    assert "fast.certainty" in text or "certainty" in text


def test_datatype_mismatch() -> None:
    data = _base()
    # confidence is FP32; the classifier's image input takes BYTES.
    data["spec"]["graph"]["sequence"][1]["then"]["inputs"] = {"image": "fast.confidence"}
    text = _problems(data)
    assert "datatype mismatch" in text and "FP32" in text and "BYTES" in text


def test_shape_mismatch() -> None:
    data = _base()
    data["spec"]["graph"]["sequence"][1]["then"]["inputs"] = {"image": "fast.top_k_labels"}
    assert "shape mismatch" in _problems(data)


def test_gpu_on_cpu_only_component() -> None:
    data = yaml.safe_load((REPO / "k8s" / "graphs" / "preprocess.yaml").read_text())
    data["spec"]["nodes"][0]["resources"]["gpu"] = 1
    text = _problems(data)
    assert "prep" in text and "cannot use one" in text


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory", "2GB"), ("memory", "lots"), ("memory", "0"), ("cpu", "two"), ("cpu", "-1")],
)
def test_resources_must_be_kubernetes_quantities(field: str, value: str) -> None:
    """Caught in the graph, naming the node's field, not by the API server refusing (or a
    renderer failing on) what was rendered from it."""
    data = _base()
    data["spec"]["nodes"][0]["resources"][field] = value
    text = _problems(data)
    assert f"spec.nodes.0.resources.{field}" in text, text
    assert f"'{value}'" in text and ("Kubernetes quantity" in text or "above zero" in text)


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [("cpu", 2, "2"), ("memory", 2147483648, "2147483648"), ("cpu", 2.0, "2")],
)
def test_resources_take_a_whole_number_as_kubernetes_does(
    field: str, value: float, text: str
) -> None:
    """`cpu: 2` unquoted is how most pod specs are written (a quantity is int-or-string);
    the graph keeps it as the quantity text, so every renderer writes what was meant. YAML's
    `2.0` is the same JSON number (kubectl sends 2, which the API server takes as an
    integer), so it is a whole number too."""
    data = _base()
    data["spec"]["nodes"][0]["resources"][field] = value
    resources = parse_graph(data).spec.nodes[0].resources
    assert getattr(resources, field) == text


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("cpu", 0.5, "write it as text"),
        ("memory", 1.5, "write it as text"),
        ("cpu", True, "not a quantity"),
        ("cpu", 0, "above zero"),
    ],
)
def test_resources_refuse_what_the_api_server_refuses(field: str, value: Any, words: str) -> None:
    """A bare fraction is no integer and no string: an int-or-string quantity field (the
    CRD's) refuses it, so the graph does too, saying how to write it."""
    data = _base()
    data["spec"]["nodes"][0]["resources"][field] = value
    text = _problems(data)
    assert f"spec.nodes.0.resources.{field}" in text, text
    assert words in text, text


def test_autoscaling_bounds() -> None:
    data = _base()
    data["spec"]["nodes"][0]["autoscaling"] = {"minReplicas": 3, "maxReplicas": 2}
    assert "maxReplicas (2) is below minReplicas (3)" in _problems(data)


def test_scale_to_zero_needs_keda() -> None:
    data = _base()
    data["spec"]["nodes"][0]["autoscaling"] = {"engine": "hpa", "minReplicas": 0, "maxReplicas": 2}
    assert "needs engine: keda" in _problems(data)


def test_duplicate_and_unused_nodes() -> None:
    data = _base()
    data["spec"]["nodes"].append(copy.deepcopy(data["spec"]["nodes"][0]))
    assert "used twice" in _problems(data)
    data = _base()
    extra = copy.deepcopy(data["spec"]["nodes"][0])
    extra["name"] = "spare"
    data["spec"]["nodes"].append(extra)
    assert "'spare' is declared but no step runs it" in _problems(data)


def test_unknown_family_and_field() -> None:
    data = _base()
    data["spec"]["nodes"][0]["family"] = "image-teleportation"
    assert "unknown component family 'image-teleportation'" in _problems(data)
    data = _base()
    data["spec"]["nodes"][0]["gpus"] = 2
    assert "gpus" in _problems(data)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(GraphValidationError, match="cannot read file"):
        load_graph(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed")
    with pytest.raises(GraphValidationError, match="not valid YAML"):
        load_graph(bad)


def _k8s_schema(schema: Any) -> Any:
    """Translate the Kubernetes structural-schema dialect to plain JSON Schema."""
    if isinstance(schema, dict):
        out = {k: _k8s_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
        if schema.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        out.pop("nullable", None)
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if out.get(flag) is True:
                out[flag] = out.pop(bound)
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
        return out
    if isinstance(schema, list):
        return [_k8s_schema(s) for s in schema]
    return schema


def test_crd_is_generated_from_the_model_and_accepts_every_graph() -> None:
    committed = yaml.safe_load(
        (REPO / "k8s" / "crds" / "infergraph.io_inferencegraphs.yaml").read_text()
    )
    # The committed file also carries Helm's ownership metadata for the README's release.
    expected = helm_owned(crd_manifest(), "infergraph", "infergraph")
    assert committed == expected, "k8s/crds is stale: run `make render`"
    schema = _k8s_schema(committed["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    for path in GRAPHS:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    bad = _base()
    bad["spec"]["nodes"][0]["resources"]["gpu"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    # The API server refuses a memory that is no quantity, as `parse_graph` does.
    bad = _base()
    bad["spec"]["nodes"][0]["resources"]["memory"] = "2GB"
    with pytest.raises(jsonschema.ValidationError, match="2GB"):
        jsonschema.validate(bad, schema)
    # Quantities are int-or-string, as controller-gen writes resource.Quantity: a whole
    # number passes, a bare fraction does not (the graph's own check says so in words).
    resources = committed_resources(committed)
    for field in ("cpu", "memory"):
        assert resources[field]["x-kubernetes-int-or-string"] is True
        assert resources[field]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        assert "type" not in resources[field]
    whole = _base()
    whole["spec"]["nodes"][0]["resources"]["cpu"] = 2
    jsonschema.validate(whole, schema)
    whole["spec"]["nodes"][0]["resources"]["cpu"] = 0.5
    with pytest.raises(jsonschema.ValidationError, match=r"0\.5"):
        jsonschema.validate(whole, schema)


def committed_resources(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD's schema of a node's `resources` fields."""
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    node = spec["properties"]["nodes"]["items"]
    return node["properties"]["resources"]["properties"]


def test_crd_itself_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(crd_manifest(), "1.31", strict=True)


def _routed(tail: list[dict[str, Any]], otherwise: dict[str, Any] | None = None) -> dict:
    when: dict[str, Any] = {
        "when": {"tensor": "cls.confidence", "op": "lt", "value": 0.5},
        "then": {"node": "summ", "inputs": {"text": "request.text"}},
    }
    if otherwise is not None:
        when["otherwise"] = otherwise
    return {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "route"},
        "spec": {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "nodes": [
                {"name": "cls", "family": "text-classification"},
                {"name": "summ", "family": "summarization"},
                {"name": "tr", "family": "translation"},
            ],
            "graph": {"sequence": [{"node": "cls"}, when, *tail]},
        },
    }


def test_a_required_input_only_one_side_of_a_when_produces_is_refused() -> None:
    """`tr` runs whichever side the gate takes, but `summ.summary` exists only on its then
    side: the graph compiled, and every request that took the other side got a 400 blaming
    it for a tensor the graph never made (runner review of 2026-12-07)."""
    text = _problems(_routed([{"node": "tr", "inputs": {"text": "summ.summary"}}]))
    assert "node 'tr'" in text and "summ.summary" in text, text
    assert "only when gate-0 takes its then side" in text, text
    # An alternative from the other side, or the cascade's fallback, always arrives.
    cascade = [{"node": "tr", "inputs": {"text": "summ.summary | request.text"}}]
    parse_graph(_routed(cascade))
    sides = _routed(
        [{"node": "tr", "inputs": {"text": "summ.summary | tr0.label"}}],
        otherwise={"node": "tr0", "inputs": {"text": "request.text"}},
    )
    sides["spec"]["nodes"].append({"name": "tr0", "family": "text-classification"})
    parse_graph(sides)


def test_alternatives_of_different_types_are_refused_naming_each() -> None:
    """'summ.summary | tr0.confidence': BYTES or FP32 by the side the gate takes. Only the
    first alternative was checked against the consumer, so the graph compiled and every
    request taking the other side handed `tr` a tensor of the wrong type."""
    sides = _routed(
        [{"node": "tr", "inputs": {"text": "summ.summary | tr0.confidence"}}],
        otherwise={"node": "tr0", "inputs": {"text": "request.text"}},
    )
    sides["spec"]["nodes"].append({"name": "tr0", "family": "text-classification"})
    text = _problems(sides)
    assert "'summ.summary | tr0.confidence'" in text, text
    assert "summ.summary is BYTES [-1]" in text and "tr0.confidence is FP32 [-1]" in text, text


def _two_sided(outputs: dict[str, str] | None = None) -> dict[str, Any]:
    """cls, then `det` (object-detection) or `cls2` (image-classification): both make a
    `scores`, FP32 [-1] (one per box) and FP32 [-1, -1] (one row of class scores per image)."""
    doc: dict[str, Any] = {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "sides"},
        "spec": {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
            "nodes": [
                {"name": "cls", "family": "image-classification"},
                {"name": "det", "family": "object-detection"},
                {"name": "cls2", "family": "image-classification"},
            ],
            "graph": {
                "sequence": [
                    {"node": "cls"},
                    {
                        "when": {"tensor": "cls.confidence", "op": "lt", "value": 0.5},
                        "then": {"node": "det", "inputs": {"image": "request.image"}},
                        "otherwise": {"node": "cls2", "inputs": {"image": "request.image"}},
                    },
                ]
            },
        },
    }
    if outputs is not None:
        doc["spec"]["outputs"] = outputs
    return doc


def test_a_when_whose_sides_answer_one_name_with_two_shapes_is_refused() -> None:
    """The graph's outputs default to the `when`'s: its `scores` was [-1] in the metadata
    (`GraphPlan.output_specs`, the then side's) and [-1, -1] in every answer the otherwise
    side gave. Declared outputs that avoid the clash compile."""
    text = _problems(_two_sided())
    assert "'scores'" in text, text
    assert "det.scores is FP32 [-1]" in text and "cls2.scores is FP32 [-1, -1]" in text, text
    parse_graph(_two_sided({"label": "det.labels | cls2.label", "first": "cls.scores"}))


def test_a_step_after_the_when_that_reads_or_passes_on_the_clash_is_refused() -> None:
    """A combiner reading `scores` by name, and an identity output transformer passing it on
    (whose outputs are the graph's answer): each takes one type whichever side ran."""
    reads = _two_sided({"label": "det.labels | cls2.label"})
    reads["spec"]["nodes"].append({"name": "comb", "family": "combiner"})
    reads["spec"]["graph"]["sequence"].append({"node": "comb"})
    text = _problems(reads)
    assert "input 'scores' of node 'comb' reads 'scores'" in text, text
    assert "det.scores is FP32 [-1], cls2.scores is FP32 [-1, -1]" in text, text
    passes = _two_sided({"label": "out.label"})
    passes["spec"]["nodes"].append({"name": "out", "family": "identity"})
    passes["spec"]["graph"]["sequence"].append({"node": "out", "role": "output-transformer"})
    text = _problems(passes)
    assert "node 'out' passes on 'scores'" in text, text


def test_a_cascades_clash_names_the_tensor_its_pass_forwards() -> None:
    """Without `otherwise` the other side is the cascade's pass of what was current: it is
    named by that (`cls.scores`), not by the pass step (`pass-0.scores`)."""
    cascade = _two_sided()
    del cascade["spec"]["graph"]["sequence"][1]["otherwise"]
    cascade["spec"]["nodes"].pop()  # cls2
    text = _problems(cascade)
    assert "det.scores is FP32 [-1], cls.scores is FP32 [-1, -1]" in text, text
    assert "pass-" not in text, text
