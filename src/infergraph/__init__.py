"""infergraph: model runtimes, inference graphs, cluster renderers and cost-aware load testing."""

__version__ = "0.1.0"
