"""Build and lint tooling run from the repository root (not part of the infergraph package)."""
