"""The KEDA ScaledObject KServe writes for an InferenceService of `autoscalerClass: keda`, and
how long KEDA then waits before the last replica goes, written from their source and kept to
the scaling fields the kit renders.

KServe (commit aaac4e2, the CRDs' commit), pkg/controller/v1beta1/inferenceservice/reconcilers/
keda/keda_reconciler.go `createKedaScaledObject` (:187-276):

- the stabilization windows come from `autoScaling.behavior.scaleDown` / `.scaleUp` (:202-209);
  a window the InferenceService leaves out falls back to the `inferenceservice-config`
  autoscaler values (:211-227), else none is set and the HPA's defaults hold (300 s down);
- only those two windows are copied into `advanced.horizontalPodAutoscalerConfig.behavior`
  (:258-275): no policies, no selectPolicy;
- min/max replicas from the component (:193-198, 229-235);
- no `cooldownPeriod` is written (the object at :241-256 has none; nothing else in the file
  sets one).

KEDA (kedacore/keda 8b4f083): without `cooldownPeriod` the wait between the last active
trigger and scaling to zero is `defaultCooldownPeriod`, 300 s
(pkg/scaling/executor/scale_executor.go:37; pkg/scaling/executor/scale_scaledobjects.go:204-208).
"""

from __future__ import annotations

from typing import Any

KEDA_DEFAULT_COOLDOWN_S = 300


def scaled_object_spec(
    isvc: dict[str, Any], config_windows: dict[str, int] | None = None
) -> dict[str, Any]:
    """The ScaledObject spec KServe writes for the InferenceService's predictor;
    `config_windows` stands for the `inferenceservice-config` autoscaler values
    (`scaleDown`/`scaleUp` seconds), absent by default."""
    predictor = isvc["spec"]["predictor"]
    behavior = (predictor.get("autoScaling") or {}).get("behavior") or {}
    config = config_windows or {}
    windows = {}
    for side in ("scaleDown", "scaleUp"):
        window = (behavior.get(side) or {}).get("stabilizationWindowSeconds")
        if window is None:
            window = config.get(side)
        if window is not None:
            windows[side] = {"stabilizationWindowSeconds": window}
    low = predictor.get("minReplicas", 1)
    spec: dict[str, Any] = {
        "minReplicaCount": low,
        "maxReplicaCount": max(predictor.get("maxReplicas", 0), low),
    }
    if windows:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": windows}}
    return spec


def scale_down_window_s(spec: dict[str, Any]) -> int:
    """The HPA's scale-down stabilization window under that ScaledObject (the HPA's own
    default, 300 s, where KServe set none)."""
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    window = ((behavior or {}).get("scaleDown") or {}).get("stabilizationWindowSeconds")
    return 300 if window is None else int(window)


def zero_cooldown_s(spec: dict[str, Any]) -> int:
    """How long KEDA waits after the last active trigger before scaling 1 -> 0."""
    return int(spec.get("cooldownPeriod", KEDA_DEFAULT_COOLDOWN_S))
