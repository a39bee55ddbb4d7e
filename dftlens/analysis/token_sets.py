"""Which token ids count as "the model is starting to say this word".

Wendler et al.: the set of ids of every string prefix of the word that is a single
token, with and without the leading-space marker, plus (for byte-fallback
tokenizers) the token of the word's first UTF-8 byte. P(language) at a layer is
the lens probability mass on that set.
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
        self.tokenizer = tokenizer
        self._cache: dict[str, frozenset[int]] = {}

    @cached_property
    def vocab(self) -> dict[str, int]:
        return self.tokenizer.get_vocab()

    @cached_property
    def _byte_level(self) -> bool:
        """GPT-2/Llama-3 style vocabularies spell a leading space "Ġ" (SentencePiece: "▁")."""
        ids = self.tokenizer(" a", add_special_tokens=False)["input_ids"]
        return any(tok.startswith("Ġ") for tok in self.tokenizer.convert_ids_to_tokens(ids))

    def _as_vocab_strings(self, text: str) -> list[str]:
        if self._byte_level:  # bytes mapped to printable characters, as GPT-2's BPE does
            return ["".join(_BYTE_CHARS[b] for b in s.encode("utf-8")) for s in (text, " " + text)]
        return [text, "▁" + text]

    def ids(self, word: str) -> frozenset[int]:
        if word in self._cache:
            return self._cache[word]
        found: set[int] = set()
        for end in range(1, len(word) + 1):
            for candidate in self._as_vocab_strings(word[:end]):
                if candidate in self.vocab:
                    found.add(self.vocab[candidate])
        first_byte = f"<0x{word.encode('utf-8')[0]:02X}>"  # byte-fallback (Llama-2, Gemma)
        if first_byte in self.vocab:
            found.add(self.vocab[first_byte])
        self._cache[word] = frozenset(found)
        return self._cache[word]

    def overlap(self, word_a: str, word_b: str) -> bool:
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
