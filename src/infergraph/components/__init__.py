"""Model families as framework-neutral components; see `registry` for the family names."""

from infergraph.components.base import (
    Component,
    ComponentResult,
    ComponentSettings,
    Prepared,
    TensorSpec,
)
from infergraph.components.registry import component_class, family_names

__all__ = [
    "Component",
    "ComponentResult",
    "ComponentSettings",
    "Prepared",
    "TensorSpec",
    "component_class",
    "family_names",
]
