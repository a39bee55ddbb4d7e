"""Parallel instruction data for DFT: format and tokenise.

Each example is one instruction in English and in a target language; the
accepted file layouts and their reading (``load_instructions``, the bundled files) are
:mod:`dftlens.data.instruction_files`.

Prompt formatting (:class:`PromptFormat`). The default ``plain`` template is the
stanford_alpaca layout without its preamble sentence, with English headers for
every language (as in the paper's translated Alpaca)::

    ### Instruction:
    {instruction}

    ### Input:            <- only when there is an input
    {input}

    ### Response:
    {output}<eos>

``chat`` uses the tokenizer's own chat template (one user turn, then the
assistant turn); the response is then the answer plus whatever the template
writes after it (e.g. ``<end_of_turn>``). Either way BOS appears exactly once, at
the start of the prompt: the tokenizer's convention decides whether there is one,
and a chat template that already writes it is not given a second.

Tokenisation is exact at every segment boundary. Each training sequence is one
text, ``prefix + continuation`` (the target prompt and its response; the target
prompt and the English query text; ...), tokenised ONCE, as a model sees it at
inference; the boundary between prefix and continuation is then found from the
tokens' character offsets (:class:`Segmented`). Tokenising the pieces separately
and concatenating the ids is wrong for tokenizers that mark the start of every
string (SentencePiece in legacy mode, Llama-2 and Mistral: ``"法国"`` alone is
``['▁', '法', '国']``) and for merges across the boundary. A token that straddles
the boundary belongs to the continuation (it is predicted). The LC logits
continuation is the English query text alone (no template, no BOS/EOS); the ET
logits continuation is the English response (+ EOS, or the chat template's end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DataError
from .instruction_files import InstructionData, InstructionPair, Turn

TEMPLATES = ("plain", "chat")


# ------------------------------------------------------------- formatting ---
@dataclass
class Segmented:
    """Token ids of ``prefix + continuation`` tokenised as one text.

    ``ids[:prefix]`` lie wholly inside the prefix text (BOS included);
    ``ids[prefix:]`` is the continuation, where the loss is taken (the first of them
    may start inside the prefix text when a token straddles the boundary).
    ``shared``: leading ids equal to those of the example's main sequence (``<=
    prefix``), which a pass may take from the main pass instead of recomputing.
    """

    ids: list[int]
    prefix: int
    shared: int = 0

    @property
    def continuation(self) -> list[int]:
        """The continuation's ids, ``ids[prefix:]`` (the tokens the loss is taken on)."""
        return self.ids[self.prefix :]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class PromptFormat:
    """Turns :class:`Turn` texts into :class:`Segmented` token ids (BOS once, EOS at the end)."""

    tokenizer: object
    template: str = "plain"
    _adds_bos: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise DataError(f"Unknown prompt template {self.template!r}; use one of {', '.join(TEMPLATES)}.")
        tok = self.tokenizer
        if self.template == "chat" and not getattr(tok, "chat_template", None):
            raise DataError("This tokenizer has no chat template; use the plain template (drop --chat-template).")
        bos = tok.bos_token_id
        self._adds_bos = bos is not None and tok("a", add_special_tokens=True)["input_ids"][:1] == [bos]

    def prompt_text(self, turn: Turn) -> str:
        """The prompt of ``turn`` up to where the response starts.

        ``plain``: the ``### Instruction:`` / ``### Input:`` / ``### Response:`` layout (module
        docstring; no BOS, the tokenizer adds it). ``chat``: the tokenizer's chat template for one
        user turn with the generation prompt.
        """
        if self.template == "chat":
            messages = [{"role": "user", "content": turn.query}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        text = f"### Instruction:\n{turn.instruction}\n\n"
        if turn.input:
            text += f"### Input:\n{turn.input}\n\n"
        return text + "### Response:\n"

    def response_text(self, turn: Turn) -> tuple[str, bool]:
        """(the text after the prompt, whether EOS follows it): the answer and its end.

        Plain template: the output, then EOS. Chat: what the template writes for the
        assistant turn after the generation prompt (its own end-of-turn marker).
        """
        if self.template == "chat":
            prompt = self.prompt_text(turn)
            messages = [{"role": "user", "content": turn.query}, {"role": "assistant", "content": turn.output}]
            full = self.tokenizer.apply_chat_template(messages, tokenize=False)
            if full.startswith(prompt) and turn.output in full[len(prompt):]:
                return full[len(prompt):].rstrip("\n"), False
        return turn.output, self.tokenizer.eos_token_id is not None

    def ids(self, text: str) -> list[int]:
        """``text`` alone, no special tokens added (for texts that are never joined to another)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, prefix: str, continuation: str = "", eos: bool = False) -> Segmented:
        """``prefix + continuation`` tokenised once (BOS by the tokenizer's convention, EOS if asked)."""
        tok = self.tokenizer
        text = prefix + continuation
        boundary = len(prefix)
        if getattr(tok, "is_fast", False):
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
            # Leading tokens wholly inside the prefix (a straddling token goes to the continuation).
            prefix_len = 0
            while prefix_len < len(ids) and offsets[prefix_len][1] <= boundary and offsets[prefix_len][0] < boundary:
                prefix_len += 1
        else:  # slow tokenizers give no offsets: the prefix is what the joined text shares with the prefix alone
            ids = self.ids(text)
            alone = self.ids(prefix)
            prefix_len = _common_prefix(ids, alone) if continuation else len(ids)
        if not continuation:
            prefix_len = len(ids)
        bos = tok.bos_token_id
        if self._adds_bos:
            while len(ids) > 1 and ids[0] == bos and ids[1] == bos:  # a chat template that writes BOS itself
                ids, prefix_len = ids[1:], prefix_len - 1
            if not ids or ids[0] != bos:
                ids, prefix_len = [bos] + ids, prefix_len + 1
        if eos:
            ids = ids + [tok.eos_token_id]
        return Segmented(ids, prefix_len, prefix_len)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@dataclass
class EncodedPair:
    """Every sequence one example trains on, each tokenised as one text (no padding).

    ``main``: [target prompt, target response + end]; L_TFT, and the target side of
    the feature losses (pooled over ``main.ids[:main.prefix]``, BOS excluded).
    ``english``: [English prompt] alone; the English side of the feature losses.
    ``lc``: [target prompt, English query text]; LC logits. ``et``: [target prompt,
    English response + end]; ET logits. ``en_main``: [English prompt, English
    response + end]; the held-out NLL of the English side.
    """

    main: Segmented
    english: Segmented
    lc: Segmented
    et: Segmented
    en_main: Segmented
    where: str
    id: str = ""


def encode_pair(pair: InstructionPair, fmt: PromptFormat) -> EncodedPair:
    """Every sequence one example trains on (:class:`EncodedPair`), each tokenised once.

    ``lc`` and ``et`` record in ``shared`` how many leading ids they share with ``main`` (at most
    both prefixes); ``english`` and ``en_main`` start from the English prompt and share none.
    """
    tgt_prompt, en_prompt = fmt.prompt_text(pair.tgt), fmt.prompt_text(pair.en)
    main = fmt.encode(tgt_prompt, *fmt.response_text(pair.tgt))
    lc = fmt.encode(tgt_prompt, pair.en.query)
    et = fmt.encode(tgt_prompt, *fmt.response_text(pair.en))
    for seq in (lc, et):
        seq.shared = min(_common_prefix(seq.ids, main.ids), seq.prefix, main.prefix)
    english, en_main = fmt.encode(en_prompt), fmt.encode(en_prompt, *fmt.response_text(pair.en))
    english.shared = en_main.shared = 0  # another prompt: nothing in common with the main pass
    return EncodedPair(main, english, lc, et, en_main, pair.where, pair.id)


def encode_pairs(data: InstructionData, fmt: PromptFormat, max_length: int,
                 drop_long: bool = False, english_response: bool = False) -> list[EncodedPair]:
    """Tokenise every example; any sequence over ``max_length`` is an error naming its line.

    The sequences checked are those training runs: target prompt + target
    response, target prompt + English query, target prompt + English response,
    and the English prompt (``english_response``: English prompt + response too).
    ``drop_long`` skips such examples instead.
    """
    encoded = []
    for pair in data.pairs:
        enc = encode_pair(pair, fmt)
        lengths = {
            f"{data.lang} query + {data.lang} response": len(enc.main),
            f"{data.lang} query + en query": len(enc.lc),
            f"{data.lang} query + en response": len(enc.et),
            "en query": len(enc.english),
        }
        if english_response:
            lengths["en query + en response"] = len(enc.en_main)
        worst = max(lengths, key=lengths.get)
        if lengths[worst] > max_length:
            if not drop_long:
                raise DataError(
                    f"{pair.where}: {worst} is {lengths[worst]} tokens, over --max-length {max_length}; "
                    "raise --max-length, shorten the example or pass --drop-long."
                )
            continue
        encoded.append(enc)
    if not encoded:
        raise DataError(f"Every example in {data.source} is longer than --max-length {max_length}.")
    return encoded
