"""The text tower of the video-text model: BERT whose upper layers cross-attend to video tokens.

Glossary: B batch, L text length, Dt text width, Dv video width (``encoder_width``), M video
memory length (patch tokens of all frames), V vocabulary.

Built from ``transformers``' BERT pieces (embeddings, layers, MLM head, tokenizer). What the
release (``xbert``) does differently from a stock BERT, and what this module therefore adds:

- layers ``>= fusion_layer`` get a cross-attention block whose key/value projections read the
  *video* width (``Linear(Dv, Dt)``), between self-attention and the feed-forward block;
- the model runs in two halves: ``text`` (layers ``[0, fusion_layer)``, the unimodal text
  encoder) and ``fusion`` (layers ``[fusion_layer, N)`` on the text half's output + video tokens);
- the self-attention padding mask is additive ``-10000 * (1 - mask)`` (not ``finfo.min``).

The tokenizer: the release's ``bert-base-uncased`` WordPiece when a local folder holding its
``vocab.txt`` is given; otherwise a WordPiece vocabulary trained on the captions with
``tokenizers`` (saved next to the model, so nothing is fetched from a hub).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PUNCT = re.compile(r"([,.'!?\"()*#:;~])")


def pre_text(text: str, max_words: int | None = None) -> str:
    """The release's caption cleaning: lower case, ``,.'!?"()*#:;~`` removed, ``-`` and ``/`` to
    spaces, runs of white space collapsed."""
    text = _PUNCT.sub("", str(text).lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    if max_words:
        words = text.split(" ")
        text = " ".join(words[:max_words])
    return text


@dataclass
class TextConfig:
    """BERT hyper-parameters plus the fusion split. Defaults: bert-base, as the m16 release."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0
    # std of the normal init (BERT's 0.02). Trained from scratch at small widths, 0.02 leaves the [CLS]
    # output nearly the same for every caption (attention averages tiny values into a large residual):
    # a long plateau at chance; ~1/sqrt(hidden_size) does not have it.
    initializer_range: float = 0.02
    fusion_layer: int = 9                  # layers [0, fusion_layer) text only, the rest cross-attend
    encoder_width: int = 576               # width of the video tokens the fusion layers read

    def __post_init__(self):
        for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "encoder_width"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"text.{k} must be a positive integer, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"text.hidden_size={self.hidden_size} is not a multiple of "
                             f"text.num_attention_heads={self.num_attention_heads}")
        if not 1 <= self.fusion_layer <= self.num_hidden_layers:
            raise ValueError(f"text.fusion_layer must be in [1, num_hidden_layers={self.num_hidden_layers}], "
                             f"got {self.fusion_layer}")

    def to_hf(self):
        from transformers import BertConfig

        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("fusion_layer", "encoder_width")}
        cfg = BertConfig(**d)
        cfg._attn_implementation = "eager"
        return cfg

    @classmethod
    def from_dict(cls, d: dict) -> "TextConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown text config field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) 1 = token, 0 = pad -> (B, 1, 1, L) additive mask, as the release: -10000 * (1 - m)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * -10000.0


class FusionBert(nn.Module):
    """BERT encoder (no pooler) with cross-attention in layers ``>= fusion_layer``.

    State-dict keys are BERT's: ``embeddings.*``, ``encoder.layer.N.{attention, crossattention,
    intermediate, output}.*``.
    """

    def __init__(self, cfg: TextConfig):
        super().__init__()
        from transformers.models.bert.modeling_bert import BertAttention, BertEmbeddings, BertLayer

        self.cfg = cfg
        hf = cfg.to_hf()
        self.hf_config = hf
        self.embeddings = BertEmbeddings(hf)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([BertLayer(hf, layer_idx=i) for i in range(cfg.num_hidden_layers)])
        for i in range(cfg.fusion_layer, cfg.num_hidden_layers):
            ca = BertAttention(hf, is_cross_attention=True, layer_idx=i)
            # the release's keys/values read the video width
            ca.self.key = nn.Linear(cfg.encoder_width, ca.self.all_head_size)
            ca.self.value = nn.Linear(cfg.encoder_width, ca.self.all_head_size)
            self.encoder.layer[i].crossattention = ca
        self.grad_checkpointing = False
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module):
        # BERT's init (normal initializer_range, zero bias, LayerNorm 1/0), as the release's from-scratch path.
        std = self.cfg.initializer_range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def _layer(self, i: int, h, mask, video, video_mask):
        layer = self.encoder.layer[i]
        h = layer.attention(h, mask)[0]
        if i >= self.cfg.fusion_layer:
            if video is None:
                raise ValueError(f"text layer {i} is a fusion layer: it needs video tokens")
            h = layer.crossattention(h, None, video, video_mask)[0]
        return layer.feed_forward_chunk(h)

    def _run(self, h, mask, layers, video=None, video_mask=None):
        ext = additive_mask(mask, h.dtype)
        vmask = None if video_mask is None else additive_mask(video_mask, h.dtype)
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for i in layers:
            if ckpt:
                from torch.utils.checkpoint import checkpoint
                h = checkpoint(self._layer, i, h, ext, video, vmask, use_reentrant=False)
            else:
                h = self._layer(i, h, ext, video, vmask)
        return h

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids + mask -> (B, L, Dt): embeddings and the text-only layers (mode "text")."""
        if input_ids.shape[1] > self.cfg.max_position_embeddings:
            raise ValueError(f"text length {input_ids.shape[1]} exceeds max_position_embeddings="
                             f"{self.cfg.max_position_embeddings}")
        h = self.embeddings(input_ids=input_ids)
        return self._run(h, attention_mask, range(self.cfg.fusion_layer))

    def forward_fusion(self, text_tokens: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor,
                       video_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, Dt) text-half output + (B, M, Dv) video tokens -> (B, L, Dt) (mode "fusion")."""
        if video.shape[-1] != self.cfg.encoder_width:
            raise ValueError(f"video tokens have width {video.shape[-1]} but the fusion layers expect "
                             f"encoder_width={self.cfg.encoder_width}")
        return self._run(text_tokens, attention_mask, range(self.cfg.fusion_layer, self.cfg.num_hidden_layers),
                         video, video_mask)


def build_mlm_head(cfg: TextConfig, word_embeddings: nn.Embedding) -> nn.Module:
    """transformers' ``BertLMPredictionHead`` (dense -> act -> LayerNorm -> decoder), with the
    decoder weight tied to the word embeddings and ``decoder.bias`` the same tensor as ``bias``."""
    from transformers.models.bert.modeling_bert import BertLMPredictionHead

    head = BertLMPredictionHead(cfg.to_hf())
    head.decoder.weight = word_embeddings.weight
    head.decoder.bias = head.bias
    for m in head.transform.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    nn.init.zeros_(head.bias)
    return head


# ------------------------------------------------------------------------------ tokenizer
class TextTokenizer:
    """WordPiece tokenizer (``transformers.BertTokenizerFast``) + the release's call settings.

    ``__call__(texts)`` cleans each caption with :func:`pre_text`, pads to ``max_length`` and
    truncates longer ones; ``last_truncated`` counts the captions cut by the last call.
    """

    def __init__(self, vocab_file: str | Path, max_length: int = 32):
        from transformers import BertTokenizerFast

        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise FileNotFoundError(f"tokenizer vocabulary {vocab_file} does not exist")
        self.vocab_file = vocab_file
        vocab: dict[str, int] = {}
        for line in vocab_file.read_text(encoding="utf-8").splitlines():
            tok = line.rstrip("\n")
            if tok and tok not in vocab:
                vocab[tok] = len(vocab)
        if not vocab:
            raise ValueError(f"{vocab_file}: empty vocabulary")
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"{vocab_file}: vocabulary lacks the special token(s) {missing}")
        self.tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
        self.max_length = int(max_length)
        self.last_truncated = 0
        self.pad_token_id = self.tok.pad_token_id
        self.cls_token_id = self.tok.cls_token_id
        self.sep_token_id = self.tok.sep_token_id
        self.mask_token_id = self.tok.mask_token_id
        self.unk_token_id = self.tok.unk_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.tok.get_vocab())

    def __call__(self, texts: "list[str] | str", max_length: int | None = None, clean: bool = True,
                 allow_empty: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """-> input_ids (B, L) int64, attention_mask (B, L) int64."""
        if isinstance(texts, str):
            texts = [texts]
        L = int(max_length or self.max_length)
        cleaned = [pre_text(t) if clean else str(t) for t in texts]
        if not allow_empty:
            empty = [i for i, t in enumerate(cleaned) if not t.strip()]
            if empty:
                raise ValueError(f"caption(s) at position(s) {empty[:10]} are empty"
                                 + (f" (after cleaning: {texts[empty[0]]!r})" if texts[empty[0]].strip() else ""))
        full = self.tok(cleaned, add_special_tokens=True, truncation=False)["input_ids"]
        self.last_truncated = sum(len(ids) > L for ids in full)
        enc = self.tok(cleaned, padding="max_length", truncation=True, max_length=L, return_tensors="pt")
        return enc["input_ids"].long(), enc["attention_mask"].long()

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        dst = directory / "vocab.txt"
        if dst.resolve() != self.vocab_file.resolve():
            from ..fileio import atomic_write_text
            atomic_write_text(dst, self.vocab_file.read_text(encoding="utf-8"))
        return dst


def find_vocab(spec: str | Path | None) -> Path | None:
    """A ``vocab.txt`` file, or a folder holding one (a local ``bert-base-uncased``)."""
    if spec is None:
        return None
    p = Path(spec)
    if p.is_file():
        return p
    if p.is_dir() and (p / "vocab.txt").is_file():
        return p / "vocab.txt"
    raise FileNotFoundError(f"tokenizer {str(spec)!r}: expected a vocab.txt file or a folder holding one "
                            f"(e.g. a local bert-base-uncased)")


def train_wordpiece(captions: "list[str]", out_file: str | Path, vocab_size: int = 1000,
                    min_frequency: int = 1) -> Path:
    """Train a lower-case WordPiece vocabulary on ``captions`` (cleaned with :func:`pre_text`) and
    write it as a BERT ``vocab.txt`` whose first ids are the release's special tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if not captions:
        raise ValueError("cannot train a tokenizer without captions")
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS))
    tk.train_from_iterator((pre_text(c) for c in captions), trainer=trainer)
    vocab = tk.get_vocab()
    ordered = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    from ..fileio import atomic_write_text
    atomic_write_text(out_file, "\n".join(ordered) + "\n")
    return out_file
