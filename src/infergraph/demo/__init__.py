"""`make demo` (`infergraph demo`): the embedded default end to end on one machine.

Serve a graph with random weights, find its knee with an open-loop sweep, price each
rate, plan the graph for a stated rate from a profile of what was served, and render
the graph and the plan for every engine; every artifact lands in one folder.
"""

from infergraph.demo.findings import Findings
from infergraph.demo.server import DemoError
from infergraph.demo.steps import DemoSettings
from infergraph.demo.story import run_demo

__all__ = ["DemoError", "DemoSettings", "Findings", "run_demo"]
