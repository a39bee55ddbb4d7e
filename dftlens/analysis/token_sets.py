"""Which token ids count as "the model is starting to say this word", and what to do when
two languages' sets share a token.

**Prefix sets** (Wendler et al. 2024, ``process_tokens`` in epfl-dlab/llm-latent-language's
``Translation.ipynb``; the default): the ids of every string prefix of the word that is a
single token, with and without the leading-space marker. P(language) at a layer is the lens
probability mass on that set. Per vocabulary kind:

- SentencePiece (Llama-2 with its legacy "▁" prepended to the text, Gemma, Mistral): every
  character prefix ``p`` of the word (inner spaces written "▁") as ``p`` and as ``"▁" + p``.
- Byte-level BPE (GPT-2, Llama-3, Qwen): tokens are byte strings written with GPT-2's
  byte-to-character table: every BYTE prefix of the word's UTF-8 encoding, with and without
  the "Ġ" (space byte) in front.

**Byte fallback.** A model whose vocabulary lacks a word's first character starts the word
with the token of its first UTF-8 byte (SentencePiece ``<0xE7>``; byte-level BPE: a byte
prefix that ends inside the first character). Such a token starts every character that
begins with the same byte (most common CJK characters start with one of 0xE4-0xE9), so it
is added to a word's set ONLY when the first character has no ordinary token (neither
``c`` nor ``"▁c"``), and it is never a reason to call two words overlapping (it is left out
of :meth:`TokenSets.overlap` and of the exclusive removal). Wendler et al. add ``<0x..>``
for zh and ru words always; Dumas et al. for every word with a non-ASCII byte; an English
set never gets ``<0x61>`` here (the model emits "a"/"▁a", not the byte).

**First-token sets** (Dumas et al. 2025, ``process_tokens_with_tokenization`` in
Butanium/llm-lang-agnostic's ``src/prompt_tools.py``, their default): the first token the
tokenizer produces for ``word`` and for ``" " + word`` (the latter unless it is a bare space
token). ``TokenSets(tokenizer, kind="first")``; ``dftlens patch --token-sets first``.

**Overlap policies** (:data:`OVERLAP_POLICIES`, :meth:`TokenSets.answer_sets`) for an item's
English, target and input-word sets:

- ``exclusive`` (the default): keep the item and remove every token two of its sets share
  from all of them, so mass on an ambiguous token counts for no language. The item is
  dropped only when its English or target set ends up empty (e.g. "taxi" -> "taxi").
- ``drop``: drop the item when any two of its sets share a token (en-target, en-input,
  target-input).
- ``keep``: Wendler et al.'s rule: drop the item only when the English and target sets
  share a token, the English word is a substring of the target word (case-insensitive),
  or either set is empty; the sets stay whole, so mass on a token the input word shares
  counts for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

# How vocabularies mark a word-initial space: SentencePiece "▁", byte-level BPE "Ġ".
SPACE_MARKERS = ("▁", "Ġ")
OVERLAP_POLICIES = ("exclusive", "drop", "keep")  # see the module docstring; the first is the default
TOKEN_SET_KINDS = ("prefix", "first")  # Wendler et al.'s prefix sets, Dumas et al.'s first tokens
OVERLAP_KINDS = ("en_target", "en_input", "target_input")
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


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
_CHAR_BYTES = {c: b for b, c in _BYTE_CHARS.items()}


@dataclass(frozen=True)
class AnswerSets:
    """One item's token sets after an overlap policy (:meth:`TokenSets.answer_sets`).

    ``en``, ``target``, ``input`` are token-id sets (``input`` empty when the item has no
    separate input word); ``overlaps`` the kinds of :data:`OVERLAP_KINDS` whose ordinary
    tokens were shared before the policy; ``removed`` the number of ids taken out of each
    set (``{"en": n, "target": n, "input": n}``, non-zero only under ``exclusive``);
    ``kept`` whether the policy keeps the item, and ``reason`` why not (``"en_target"``,
    ``"en_input"``, ``"target_input"``, ``"substring"``, ``"empty"``; None when kept).
    """

    en: frozenset[int]
    target: frozenset[int]
    input: frozenset[int]
    overlaps: tuple[str, ...] = ()
    removed: dict[str, int] = field(default_factory=dict)
    kept: bool = True
    reason: str | None = None


class TokenSets:
    """Builds and caches answer-word token sets for one tokenizer (see the module docstring).

    ``kind``: ``"prefix"`` (Wendler et al., default) or ``"first"`` (Dumas et al.).
    Raises ValueError for another kind.
    """

    def __init__(self, tokenizer, kind: str = "prefix"):
        """Token sets for ``tokenizer`` (a Hugging Face tokenizer), computed per word on first use."""
        if kind not in TOKEN_SET_KINDS:
            raise ValueError(f"unknown token-set kind {kind!r}; use one of {', '.join(TOKEN_SET_KINDS)}")
        self.tokenizer = tokenizer
        self.kind = kind
        self._cache: dict[str, frozenset[int]] = {}
        self._answers: dict[tuple, AnswerSets] = {}

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

    @cached_property
    def _fallback_ids(self) -> frozenset[int]:
        """Ids of SentencePiece byte tokens ``<0xXX>`` (never counted as an overlap)."""
        return frozenset(i for tok, i in self.vocab.items() if _BYTE_TOKEN.fullmatch(tok))

    def candidates(self, word: str) -> list[str]:
        """The ordinary vocabulary strings that count as starting ``word`` (prefixes, with and
        without the space marker; no byte-fallback token, see :meth:`fallback`)."""
        if not word:
            return []
        if self._byte_level:  # bytes mapped to printable characters, as GPT-2's BPE does
            raw, first = word.encode("utf-8"), len(word[0].encode("utf-8"))
            prefixes = ["".join(_BYTE_CHARS[b] for b in raw[:end]) for end in range(first, len(raw) + 1)]
            return prefixes + [_BYTE_CHARS[ord(" ")] + p for p in prefixes]
        prefixes = [word[:end].replace(" ", "▁") for end in range(1, len(word) + 1)]  # "pomme▁de"
        return prefixes + ["▁" + p for p in prefixes]

    def fallback(self, word: str) -> list[str]:
        """Byte-fallback strings for ``word``: only when its first character has no ordinary
        token. SentencePiece: ``<0xXX>`` of the first UTF-8 byte; byte-level BPE: the byte
        prefixes that end inside the first character, with and without "Ġ"."""
        if not word:
            return []
        first = word[0]
        if self._byte_level:
            raw = first.encode("utf-8")
            whole = "".join(_BYTE_CHARS[b] for b in raw)
            if len(raw) == 1 or whole in self.vocab or _BYTE_CHARS[ord(" ")] + whole in self.vocab:
                return []
            parts = ["".join(_BYTE_CHARS[b] for b in raw[:end]) for end in range(1, len(raw))]
            return parts + [_BYTE_CHARS[ord(" ")] + p for p in parts]
        if first in self.vocab or "▁" + first in self.vocab:
            return []
        return [f"<0x{first.encode('utf-8')[0]:02X}>"]

    def ids(self, word: str) -> frozenset[int]:
        """The word's token ids (empty if none): prefix sets (:meth:`candidates` and
        :meth:`fallback` found in the vocabulary) or, with ``kind="first"``, :meth:`first_ids`."""
        if word not in self._cache:
            if self.kind == "first":
                self._cache[word] = self.first_ids(word)
            else:
                found = self.candidates(word) + self.fallback(word)
                self._cache[word] = frozenset(self.vocab[c] for c in found if c in self.vocab)
        return self._cache[word]

    def first_ids(self, word: str) -> frozenset[int]:
        """Dumas et al.'s set: the first token of ``word`` and of ``" " + word`` as the tokenizer
        encodes them (no special tokens). They load tokenizers with ``add_prefix_space=False``;
        here a bare space-marker token that a tokenizer puts before ``word`` itself (Llama-2's
        legacy "▁") is skipped, and ``" " + word`` adds nothing when its first token is a bare
        space (as their code checks against the tokenizer's own " ")."""
        out = set()
        for text in (word, " " + word):
            encoded = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            tokens = self.tokenizer.convert_ids_to_tokens(encoded)
            bare = [t.strip("".join(SPACE_MARKERS) + " ") == "" for t in tokens]
            if text.startswith(" "):
                if encoded and not bare[0]:
                    out.add(int(encoded[0]))
                continue
            first = next((int(i) for i, b in zip(encoded, bare) if not b), None)
            if first is not None:
                out.add(first)
        return frozenset(out)

    def ordinary_ids(self, word: str) -> frozenset[int]:
        """:meth:`ids` without byte-fallback tokens: the ids that decide an overlap."""
        found = self.ids(word)
        if self._byte_level:
            partial = {self.vocab[c] for c in self.fallback(word) if c in self.vocab}
            return found - partial
        return found - self._fallback_ids

    def text(self, token: str) -> str | None:
        """The text a vocabulary token stands for, its space marker as a space (``"▁water"`` ->
        ``" water"``, byte-level ``"Ġæ°´"`` -> ``" 水"``); None for a byte token or bytes that
        are not whole UTF-8 characters (a fragment of a character belongs to no language)."""
        if _BYTE_TOKEN.fullmatch(token):
            return None
        if not self._byte_level:
            return token.replace("▁", " ")
        if any(c not in _CHAR_BYTES for c in token):
            return token  # not byte characters: a special or added token, as written
        try:
            return bytes(_CHAR_BYTES[c] for c in token).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def overlap(self, word_a: str, word_b: str) -> bool:
        """Whether the two words' ordinary token sets share an id (byte-fallback tokens never count)."""
        return bool(self.ordinary_ids(word_a) & self.ordinary_ids(word_b))

    def overlap_kinds(self, en: str, target: str, input_word: str | None = None) -> list[str]:
        """Which of the answer sets share an ordinary token id, pairwise: any of ``"en_target"``,
        ``"en_input"``, ``"target_input"``. ``input_word`` None (repetition, cloze: the input is
        the target) checks English against the target only."""
        kinds = []
        if self.overlap(en, target):
            kinds.append("en_target")
        if input_word is not None:
            if self.overlap(en, input_word):
                kinds.append("en_input")
            if self.overlap(target, input_word):
                kinds.append("target_input")
        return kinds

    def for_item(self, item, policy: str = "exclusive") -> AnswerSets:
        """:meth:`answer_sets` of a prompt item (``answer_en``, ``answer``, and ``answer_input``
        when its input language differs from the target; a :class:`~dftlens.data.prompts.PromptItem`)."""
        input_word = item.answer_input if item.input_lang not in ("en", item.target_lang) else None
        return self.answer_sets(item.answer_en, item.answer, input_word, policy)

    def answer_sets(self, en: str, target: str, input_word: str | None = None,
                    policy: str = "exclusive") -> AnswerSets:
        """An item's English, target and input-word sets under an overlap ``policy``
        (:data:`OVERLAP_POLICIES`, defined in the module docstring). ``input_word`` None: the
        item has no separate input word (repetition, cloze). Raises ValueError for an unknown
        policy."""
        if policy not in OVERLAP_POLICIES:
            raise ValueError(f"unknown overlap policy {policy!r}; use one of {', '.join(OVERLAP_POLICIES)}")
        key = (en, target, input_word, policy)
        if key not in self._answers:
            self._answers[key] = self._answer_sets(en, target, input_word, policy)
        return self._answers[key]

    def _answer_sets(self, en: str, target: str, input_word: str | None, policy: str) -> AnswerSets:
        sets = {"en": self.ids(en), "target": self.ids(target),
                "input": self.ids(input_word) if input_word is not None else frozenset()}
        kinds = tuple(self.overlap_kinds(en, target, input_word))
        removed = {side: 0 for side in sets}
        reason = None
        if policy == "exclusive":
            plain = {side: self.ordinary_ids(w) for side, w in
                     (("en", en), ("target", target), ("input", input_word or ""))}
            shared = (plain["en"] & plain["target"]) | (plain["en"] & plain["input"]) | (plain["target"] & plain["input"])
            removed = {side: len(s & shared) for side, s in sets.items()}
            sets = {side: s - shared for side, s in sets.items()}
        elif policy == "drop" and kinds:
            reason = kinds[0]
        elif policy == "keep":
            if "en_target" in kinds:
                reason = "en_target"
            elif en.lower() in target.lower():  # Wendler's "delete all rows where en is contained in de"
                reason = "substring"
        if reason is None and (not sets["en"] or not sets["target"]):
            reason = "empty"
        return AnswerSets(sets["en"], sets["target"], sets["input"], kinds, removed, reason is None, reason)
