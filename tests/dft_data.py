"""Small parallel instruction files for the DFT tests (not a test module)."""

from __future__ import annotations

import json
from pathlib import Path

ROWS = [
    ("The children are playing in the park.", "孩子们在公园里玩。", "Les enfants jouent dans le parc."),
    ("I drink coffee every morning.", "我每天早上喝咖啡。", "Je bois du café tous les matins."),
    ("Where is the train station?", "火车站在哪里？", "Où est la gare ?"),
    ("The water is cold.", "水很冷。", "L'eau est froide."),
    ("My brother reads a book.", "我哥哥在看书。", "Mon frère lit un livre."),
    ("The cat sleeps on the bed.", "猫在床上睡觉。", "Le chat dort sur le lit."),
]
ASK = {"en": "Translate into English:", "zh": "翻译成中文：", "fr": "Traduis en français :"}


def instruction_rows(n: int = 6) -> list[dict]:
    rows = []
    for k in range(n):
        en, zh, fr = ROWS[k % len(ROWS)]
        texts = {"en": en, "zh": zh, "fr": fr}
        src = texts[["fr", "zh", "en"][k % 3]]
        row = {"id": f"t{k}"}
        for lang, text in texts.items():
            has_input = k % 2 == 0
            row[lang] = {"instruction": ASK[lang], "input": src if has_input else "", "output": text}
            if not has_input:
                row[lang]["instruction"] = f"{ASK[lang]} {src}"
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
