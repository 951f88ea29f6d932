"""Offline random-weight checkpoints of each family's real architecture.

No model hub is reachable in tests or offline demos, so each model family has a
builder that saves a checkpoint (config, random weights, tokenizer or processor)
that its component loads exactly like the hub one. `registry` maps a family to its
builder; torch and transformers are imported only when a builder runs.
"""
