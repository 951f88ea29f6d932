"""The HorizontalPodAutoscaler KServe makes for an InferenceGraph's router, written from its
source (kserve v0.20.0), kept to what the kit renders.

In Standard (raw deployment) mode the InferenceGraph controller hands the raw reconciler a
component extension built from the graph's spec: `minReplicas`, `maxReplicas`, `scaleMetric`
and `scaleTarget` (pkg/controller/v1alpha1/inferencegraph/raw_ig.go:129-134, reconciled at
:156). Its HPA reconciler (pkg/controller/v1beta1/inferenceservice/reconcilers/hpa/
hpa_reconciler.go):

- `shouldCreateHPA` (:252-261): an HPA unless the object's `serving.kserve.io/autoscalerClass`
  annotation names another class than `hpa`;
- `createHPA` (:150-180): minReplicas is the spec's, raised to 1 when absent or lower
  (`constants.DefaultMinReplicas`, pkg/constants/constants.go:225); maxReplicas the spec's,
  raised to minReplicas when lower, so an absent one pins the router at its minimum;
- `getHPAMetrics` (:60-130), with no `autoScaling` block: a Resource metric on `scaleMetric`
  (cpu when absent) at `scaleTarget` percent utilisation, 80 when absent for cpu
  (`constants.DefaultCPUUtilization`, constants.go:298).
"""

from __future__ import annotations

from typing import Any

AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
DEFAULT_MIN_REPLICAS = 1
DEFAULT_CPU_UTILIZATION = 80


def router_hpa(graph: dict[str, Any]) -> dict[str, Any] | None:
    """The HPA spec KServe creates for the rendered InferenceGraph `graph`, or None."""
    annotations = graph.get("metadata", {}).get("annotations", {})
    if annotations.get(AUTOSCALER_CLASS, "hpa") != "hpa":
        return None
    spec = graph["spec"]
    low = spec.get("minReplicas")
    low = DEFAULT_MIN_REPLICAS if low is None or low < DEFAULT_MIN_REPLICAS else low
    high = max(spec.get("maxReplicas", 0), low)
    metric = spec.get("scaleMetric", "cpu")
    target = spec.get("scaleTarget")
    if metric not in ("cpu", "memory"):
        raise NotImplementedError(f"scaleMetric {metric!r} is not modelled")
    if metric == "cpu":
        target = DEFAULT_CPU_UTILIZATION if target is None else target
    elif target is None:  # memory without a target: KServe writes no metric
        return {"minReplicas": low, "maxReplicas": high, "metrics": []}
    resource = {"name": metric, "target": {"type": "Utilization", "averageUtilization": target}}
    return {
        "minReplicas": low,
        "maxReplicas": high,
        "metrics": [{"type": "Resource", "resource": resource}],
    }
