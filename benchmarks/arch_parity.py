"""Parity of every supported family with Hugging Face, both engines: the max absolute errors.

For each family, a tiny random model (tests/conftest.py: 2-4 layers, d_model 64,
the offline BPE tokenizer) and each engine: (1) residual stream vs HF
``hidden_states`` (resid_pre of every block, resid_post below the last, the
final norm of the last); (2) the sites adding up (resid_pre + attn_out vs
resid_mid, resid_mid + mlp_out vs resid_post; for parallel attention resid_pre +
attn_out + mlp_out vs resid_post); (3) the logit lens at the last layer vs the
model's logits (left padding); (4) left vs right padding at the last token.
Prints a Markdown table of the max |difference| of each check.
Usage: python benchmarks/arch_parity.py [families...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import ALL_FAMILIES, build_tiny_model_dir  # noqa: E402

from dftlens import load_model  # noqa: E402
from dftlens.models import hook_name  # noqa: E402
from dftlens.models.engine_protocol import last_token_index  # noqa: E402

TEXTS = ['Français: "eau" - English: "water"', "the cat", "水"]


def _max(a, b) -> float:
    return float((a - b).abs().max())


@torch.no_grad()
def parity(lm) -> dict[str, float]:
    batch = lm.tokenize(TEXTS, padding_side="right")
    out = lm.hf_model(**lm.model_inputs(batch), output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    L = lm.n_layers
    cap = lm.capture(batch, [hook_name(l, s) for l in range(L) for s in lm.sites])
    resid = [_max(cap[hook_name(l, "resid_pre")][mask], out.hidden_states[l][mask]) for l in range(L)]
    resid += [_max(cap[hook_name(l)][mask], out.hidden_states[l + 1][mask]) for l in range(L - 1)]
    resid.append(_max(lm.final_norm(cap[hook_name(L - 1)])[mask], out.hidden_states[-1][mask]))
    sums = []
    for l in range(L):
        a = {s: cap[hook_name(l, s)] for s in lm.sites}
        if "resid_mid" in a:
            sums += [_max(a["resid_pre"] + a["attn_out"], a["resid_mid"]), _max(a["resid_mid"] + a["mlp_out"], a["resid_post"])]
        else:
            sums.append(_max(a["resid_pre"] + a["attn_out"] + a["mlp_out"], a["resid_post"]))
    left = lm.tokenize(TEXTS, padding_side="left")
    logits = lm.hf_model(**lm.model_inputs(left)).logits
    last = hook_name(L - 1)
    names = lm.hook_names()
    lcap = lm.capture(left, names, positions="last")
    rows = torch.arange(len(TEXTS))
    lens = _max(lm.decode(lcap[last]), logits[rows, last_token_index(left["attention_mask"])])
    rcap = lm.capture(batch, names, positions="last")
    pad = _max(lcap.stack(names), rcap.stack(names))
    return {"resid vs HF": max(resid), "sites add up": max(sums), "lens vs logits": lens, "left vs right": pad}


def main() -> None:
    torch.set_num_threads(1)
    families = sys.argv[1:] or ALL_FAMILIES
    root = Path(tempfile.mkdtemp(prefix="arch_parity_"))
    print("| family | engine | sites | resid vs HF | sites add up | lens vs logits | left vs right |")
    print("|---|---|---|---|---|---|---|")
    for family in families:
        lm = load_model(str(build_tiny_model_dir(family, root / family)))
        for engine in ("transformer_lens", "nnsight"):
            model = lm if engine == "transformer_lens" else lm.with_backend("nnsight")
            err = parity(model)
            print(f"| {family} ({lm.arch.family}) | {engine} | {len(lm.sites)} | "
                  + " | ".join(f"{v:.1e}" for v in err.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
