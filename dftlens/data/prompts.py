"""Prompt builders for Wendler et al.'s three word tasks.

Each prompt ends right where the model should start the answer word, so the
logit lens at the last position measures which language the answer is in.

- translation: ``Français: "fleur" - 中文: "花"`` x demos, then ``Français: "eau" - 中文: "``
- repetition: the same word on both sides (``中文: "花" - 中文: "花"``)
- cloze: a sentence with the word blanked out and the word as answer,
  built from the parallel sentences wherever a concept's word occurs verbatim
  in both the target-language and the English sentence.

Demonstrations never include the query concept; they are drawn with a seeded
generator so that runs are reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from .languages import native_name
from .parallel import ParallelData

TASKS = ("translation", "repetition", "cloze")


@dataclass(frozen=True)
class PromptItem:
    task: str
    input_lang: str
    target_lang: str
    item_id: str
    prompt: str
    answer: str  # the expected word in the target language
    answer_en: str  # its English version (the latent-language candidate)
    answer_input: str  # the word in the input language


def _pair_line(src_lang: str, src: str, tgt_lang: str, tgt: str | None) -> str:
    left = f'{native_name(src_lang)}: "{src}" - {native_name(tgt_lang)}: "'
    return left if tgt is None else f'{left}{tgt}"'


def translation_items(words: ParallelData, input_lang: str, target_lang: str,
                      n_demos: int = 4, seed: int = 0) -> list[PromptItem]:
    rng = random.Random(f"{seed}-translation-{input_lang}-{target_lang}")
    items = []
    for i, row in enumerate(words.rows):
        others = [j for j in range(len(words.rows)) if j != i]
        demos = [words.rows[j] for j in rng.sample(others, n_demos)]
        lines = [_pair_line(input_lang, d[input_lang], target_lang, d[target_lang]) for d in demos]
        lines.append(_pair_line(input_lang, row[input_lang], target_lang, None))
        items.append(PromptItem("translation", input_lang, target_lang, words.ids[i], "\n".join(lines),
                                row[target_lang], row["en"], row[input_lang]))
    return items


def repetition_items(words: ParallelData, lang: str, n_demos: int = 4, seed: int = 0) -> list[PromptItem]:
    return [replace(item, task="repetition") for item in translation_items(words, lang, lang, n_demos, seed)]


def cloze_items(words: ParallelData, sentences: ParallelData, lang: str,
                n_demos: int = 2, seed: int = 0) -> list[PromptItem]:
    """Blank a concept's word out of a parallel sentence that contains it verbatim."""
    rng = random.Random(f"{seed}-cloze-{lang}")
    found = []  # (concept index, sentence with the blank)
    for i, row in enumerate(words.rows):
        word, en = row[lang], row["en"]
        for sent in sentences.rows:
            if word in sent[lang] and en.lower() in sent["en"].lower():
                found.append((i, sent[lang].replace(word, "___", 1)))
                break
    items = []
    for k, (i, blanked) in enumerate(found):
        others = [f for f in found if f[0] != i]
        demos = rng.sample(others, min(n_demos, len(others)))
        lines = [f'"{b}" → "{words.rows[j][lang]}"' for j, b in demos] + [f'"{blanked}" → "']
        row = words.rows[i]
        items.append(PromptItem("cloze", lang, lang, words.ids[i], "\n".join(lines), row[lang], row["en"], row[lang]))
    return items


def build_items(task: str, words: ParallelData, sentences: ParallelData | None,
                input_lang: str, target_lang: str, seed: int = 0) -> list[PromptItem]:
    if task == "translation":
        return translation_items(words, input_lang, target_lang, seed=seed)
    if task == "repetition":
        return repetition_items(words, target_lang, seed=seed)
    if task == "cloze":
        return cloze_items(words, sentences, target_lang, seed=seed)
    raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
