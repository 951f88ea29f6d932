"""The planner: per-node profiles in, the cheapest graph configuration that meets its SLO out.

`profiles` (what was measured), `topology` (the graph as stages, from the compiled
plan), `simulator` (a discrete-event model of the runtime's batcher and the graph),
`search` (hardware, batching and replicas per node), `tuner` (autoscaling targets),
`report` (tables, Pareto plot, planned YAML).
"""
