"""Family -> its offline checkpoint builder; weightless plumbing families have none.

`infergraph serve --offline`, the benchmarks and the tests build every random-weight
checkpoint through this table. The builder modules import torch and transformers only
inside their functions, so importing the table stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from infergraph.checkpoints import (
    image_captioning,
    image_classification,
    image_embedding,
    object_detection,
    question_answering,
    seq2seq,
    speech_recognition,
    text_classification,
    text_embedding,
)
from infergraph.checkpoints.builder import CheckpointBuilder

BUILDERS: Mapping[str, CheckpointBuilder] = MappingProxyType(
    {
        "image-embedding": CheckpointBuilder(
            image_embedding.build_image_embedder, image_embedding.choose
        ),
        "image-captioning": CheckpointBuilder(image_captioning.build_image_captioner),
        "image-classification": CheckpointBuilder(
            image_classification.build_image_classifier, image_classification.choose
        ),
        "object-detection": CheckpointBuilder(
            object_detection.build_object_detector, object_detection.choose
        ),
        "text-classification": CheckpointBuilder(text_classification.build_text_classifier),
        "language-identification": CheckpointBuilder(text_classification.build_language_identifier),
        "translation": CheckpointBuilder(seq2seq.build_translator),
        "summarization": CheckpointBuilder(seq2seq.build_summarizer),
        "question-answering": CheckpointBuilder(question_answering.build_question_answerer),
        "speech-recognition": CheckpointBuilder(
            speech_recognition.build_speech_recognizer, speech_recognition.choose
        ),
        "text-embedding": CheckpointBuilder(text_embedding.build_text_embedder),
    }
)


def checkpoint_builder(family: str) -> CheckpointBuilder | None:
    """The family's builder, or None for a family without weights (identity, gate, ...)."""
    return BUILDERS.get(family)
