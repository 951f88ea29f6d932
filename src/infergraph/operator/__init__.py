"""The InferenceGraph operator: kopf handlers that render applied graphs and keep them applied.

`infergraph operator` runs it (the Helm chart's Deployment starts that command). The pieces:
`config` (settings the chart passes as environment), `kube` (a small server-side-apply client),
`children` (render and own the child objects), `status` (conditions, readiness, endpoint),
`pricing` (the price and the Schedulable condition), `observed_nodes` (what the cluster's
Nodes leave a new pod, when asked to read them),
`reconcile` (one pass over one graph), `handlers` (kopf wiring), `metrics` and `chart`
(the chart's values schema and CRD template, generated from this package).
"""
