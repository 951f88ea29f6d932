"""Family name -> component class, imported lazily so the core never pulls in torch."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from infergraph.errors import SettingsError

if TYPE_CHECKING:
    from infergraph.components.base import Component

_FAMILIES: dict[str, str] = {
    "image-embedding": "infergraph.components.image_embedding:ImageEmbedder",
    "image-captioning": "infergraph.components.image_captioning:ImageCaptioner",
    "image-classification": "infergraph.components.image_classification:ImageClassifier",
    "object-detection": "infergraph.components.object_detection:ObjectDetector",
    "text-classification": "infergraph.components.text_classification:TextClassifier",
    "language-identification": "infergraph.components.text_classification:LanguageIdentifier",
    "translation": "infergraph.components.seq2seq:Translator",
    "summarization": "infergraph.components.seq2seq:Summarizer",
    "question-answering": "infergraph.components.question_answering:QuestionAnswerer",
    "speech-recognition": "infergraph.components.speech_recognition:SpeechRecognizer",
    "text-embedding": "infergraph.components.text_embedding:TextEmbedder",
    # Graph plumbing, no model weights.
    "identity": "infergraph.components.plumbing:Identity",
    "combiner": "infergraph.components.plumbing:Combiner",
    "crop-filter": "infergraph.components.plumbing:CropFilter",
    "gate": "infergraph.components.plumbing:ConditionGate",
    "image-preprocessing": "infergraph.components.image_preprocessing:ImagePreprocessor",
}


# Families outside the package (a benchmark's controlled-latency node, a test double), as
# `name=module:Class[,name=module:Class]`. The environment, not the graph, names them, so a
# graph cannot make a server import arbitrary code, while every process that serves or
# validates the graph (router, MLServer children) sees the same families.
EXTRA_FAMILIES_ENV = "INFERGRAPH_EXTRA_FAMILIES"


def _extra_families() -> dict[str, str]:
    text = os.environ.get(EXTRA_FAMILIES_ENV, "")
    out: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, path = entry.partition("=")
        if not sep or ":" not in path or not name.strip():
            raise SettingsError(EXTRA_FAMILIES_ENV, f"'{entry}' is not name=module:Class")
        out[name.strip()] = path.strip()
    return out


def _families() -> dict[str, str]:
    return {**_extra_families(), **_FAMILIES}  # an extra name never replaces a shipped one


def family_names() -> list[str]:
    return sorted(_families())


def component_path(family: str) -> str:
    try:
        return _families()[family]
    except KeyError:
        raise SettingsError(
            "family", f"unknown component family '{family}'; known: {', '.join(family_names())}"
        ) from None


def component_class(family: str) -> type[Component]:
    module_name, _, class_name = component_path(family).partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)
