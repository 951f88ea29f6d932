"""The InferenceGraph resource: one graph description for runner, renderers and load tester."""

from infergraph.graph.model import (
    Autoscaling,
    Batching,
    Condition,
    EnsembleStep,
    InferenceGraph,
    Node,
    NodeStep,
    Resources,
    SequenceStep,
    Step,
    WhenStep,
)
from infergraph.graph.plan import load_graph

__all__ = [
    "Autoscaling",
    "Batching",
    "Condition",
    "EnsembleStep",
    "InferenceGraph",
    "Node",
    "NodeStep",
    "Resources",
    "SequenceStep",
    "Step",
    "WhenStep",
    "load_graph",
]
