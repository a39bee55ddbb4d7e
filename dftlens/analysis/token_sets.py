"""Which token ids count as "the model is starting to say this word".

Wendler et al.: the set of ids of every string prefix of the word that is a single
token, with and without the leading-space marker, plus (for byte-fallback
tokenizers) the token of the word's first UTF-8 byte. P(language) at a layer is
the lens probability mass on that set.

Per vocabulary kind:

- SentencePiece (Llama-2 with its legacy "▁" prepended to the text, Gemma, Mistral):
  every character prefix ``p`` of the word (inner spaces written "▁") as ``p`` and as
  ``"▁" + p``, plus the
  byte-fallback token ``<0xXX>`` of the word's first UTF-8 byte (how such a model
  starts a word its vocabulary lacks, e.g. a rare CJK character).
- Byte-level BPE (GPT-2, Llama-3, Qwen): tokens are byte strings written with GPT-2's
  byte-to-character table, so a CJK character is three bytes and its first token may
  be one or two of them: every BYTE prefix of the word's UTF-8 encoding, with and
  without the "Ġ" (space byte) in front.
"""

from __future__ import annotations

from functools import cached_property

# How vocabularies mark a word-initial space: SentencePiece "▁", byte-level BPE "Ġ".
SPACE_MARKERS = ("▁", "Ġ")


def _gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (bytes_to_unicode)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_CHARS = _gpt2_byte_chars()


class TokenSets:
    """Builds and caches answer-word token sets for one tokenizer."""

    def __init__(self, tokenizer):
        """Token sets for ``tokenizer`` (a Hugging Face tokenizer), computed per word on first use."""
        self.tokenizer = tokenizer
        self._cache: dict[str, frozenset[int]] = {}

    @cached_property
    def vocab(self) -> dict[str, int]:
        """The tokenizer's vocabulary, token string -> id (read once)."""
        return self.tokenizer.get_vocab()

    @cached_property
    def _byte_level(self) -> bool:
        """GPT-2/Llama-3 style vocabularies spell a leading space "Ġ" (SentencePiece: "▁"):
        decided by which marker more vocabulary entries start with."""
        gpt2 = sum(1 for tok in self.vocab if tok.startswith("Ġ"))
        sentencepiece = sum(1 for tok in self.vocab if tok.startswith("▁"))
        return gpt2 > sentencepiece

    def candidates(self, word: str) -> list[str]:
        """The vocabulary strings that count as starting ``word`` (see the module docstring)."""
        if not word:
            return []
        if self._byte_level:  # bytes mapped to printable characters, as GPT-2's BPE does
            raw = word.encode("utf-8")
            prefixes = ["".join(_BYTE_CHARS[b] for b in raw[:end]) for end in range(1, len(raw) + 1)]
            return prefixes + [_BYTE_CHARS[ord(" ")] + p for p in prefixes]
        prefixes = [word[:end].replace(" ", "▁") for end in range(1, len(word) + 1)]  # "pomme▁de"
        first_byte = f"<0x{word.encode('utf-8')[0]:02X}>"  # byte fallback (Llama-2, Gemma)
        return prefixes + ["▁" + p for p in prefixes] + [first_byte]

    def ids(self, word: str) -> frozenset[int]:
        """The token ids of :meth:`candidates` that are in the vocabulary (empty if none)."""
        if word not in self._cache:
            self._cache[word] = frozenset(self.vocab[c] for c in self.candidates(word) if c in self.vocab)
        return self._cache[word]

    def overlap(self, word_a: str, word_b: str) -> bool:
        """Whether the two words' token sets share an id (then the lens cannot tell them apart)."""
        return bool(self.ids(word_a) & self.ids(word_b))

    def overlap_kinds(self, en: str, target: str, input_word: str | None = None) -> list[str]:
        """Which of the answer sets share a token id, pairwise: any of ``"en_target"``,
        ``"en_input"``, ``"target_input"``. ``input_word`` None (repetition, cloze: the input is
        the target) checks English against the target only. An item with any overlap cannot
        tell the languages apart at the lens (mass on a shared token counts for both), so the
        probe drops it, as Wendler et al. do for English vs target."""
        kinds = []
        if self.overlap(en, target):
            kinds.append("en_target")
        if input_word is not None:
            if self.overlap(en, input_word):
                kinds.append("en_input")
            if self.overlap(target, input_word):
                kinds.append("target_input")
        return kinds
