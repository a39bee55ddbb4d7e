"""Activation patching (Dumas et al.): batched sweeps, the experiments, the CLI and its errors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from dftlens.analysis.patching import run_patching
from dftlens.analysis.patch_config import PatchConfig, check_config, parse_experiments
from dftlens.analysis.patch_evidence import causal_evidence
from dftlens.analysis.patch_sweep import last_token_latents, patch_sweep, set_masses, top1_in
from dftlens.errors import DataError
from dftlens.config_files import read_run_config
from dftlens.layers import parse_layers
from dftlens_cli.app import app

runner = CliRunner()
TARGETS = ['Français: "chien" - 中文: "', 'Deutsch: "Wasser" - Русский: "', 'English: "sun" - Español: "']
SOURCES = ['Español: "agua" - Deutsch: "', 'Русский: "кот" - 日本語: "', 'Français: "lune" - English: "']
SETS = [[frozenset({5, 9}), frozenset({100})], [frozenset({7}), frozenset({8, 300})], [frozenset({1}), frozenset({2})]]


def _full_readout(logp, prompt):
    return logp  # the whole next-token distribution, to compare sweeps exactly


@pytest.mark.parametrize("family", ["gemma3", "llama"])
@pytest.mark.parametrize("cumulative", [False, True])
def test_batched_sweep_equals_one_pass_per_layer(tiny_models, one_thread, cumulative, family):
    lm = tiny_models[family]
    latents = last_token_latents(lm, SOURCES)
    layers = list(range(lm.n_layers))
    positions = torch.tensor([-2, -3, -1]) if cumulative else None
    batched = patch_sweep(lm, TARGETS, latents, layers, _full_readout, positions=positions,
                          cumulative=cumulative, rows_per_pass=100)
    for p in range(len(TARGETS)):
        for layer in layers:
            one = patch_sweep(lm, [TARGETS[p]], latents[p:p + 1], [layer], _full_readout,
                              positions=None if positions is None else positions[p:p + 1],
                              cumulative=cumulative, rows_per_pass=1, prefix_cache=False)
            torch.testing.assert_close(batched[p, layer], one[0, 0], atol=2e-5, rtol=1e-4)
    for backend_model in (lm, lm.with_backend("nnsight")):  # the shared-prefix KV cache on both engines
        full = patch_sweep(backend_model, TARGETS, latents, layers, _full_readout, positions=positions,
                           cumulative=cumulative, rows_per_pass=100, prefix_cache=False)
        torch.testing.assert_close(batched, full, atol=2e-5, rtol=1e-4)
    # different layers really give different outputs
    assert (batched[:, 0] - batched[:, -1]).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["bloom", "gpt2", "gpt_neox", "qwen2"])
def test_shared_prefix_cache_on_other_families(family, family_dir, one_thread):
    """The shared-prefix KV cache (``LensModel.run_prefix``) gives the uncached sweep on families whose
    decoder stack sits elsewhere (BLOOM and GPT-2 in ``.transformer``, GPT-NeoX in ``.gpt_neox``)."""
    from dftlens import load_model

    lm = load_model(str(family_dir(family)))
    latents = last_token_latents(lm, SOURCES)
    layers = list(range(lm.n_layers))
    cached = patch_sweep(lm, TARGETS, latents, layers, _full_readout, rows_per_pass=100)
    full = patch_sweep(lm, TARGETS, latents, layers, _full_readout, rows_per_pass=100, prefix_cache=False)
    torch.testing.assert_close(cached, full, atol=2e-5, rtol=1e-4)
    assert (cached[:, 0] - cached[:, -1]).abs().max() > 1e-3


def test_patching_the_last_layer_gives_the_source_output_and_own_latents_change_nothing(tiny_models):
    lm = tiny_models["llama"]
    last = lm.n_layers - 1
    src = last_token_latents(lm, SOURCES)
    own = last_token_latents(lm, TARGETS)
    readout = set_masses(SETS)
    patched = patch_sweep(lm, TARGETS, src, [0, last], readout)
    untouched = patch_sweep(lm, TARGETS, own, [0, last], readout)
    with torch.no_grad():
        src_logp = lm.log_probs(src[:, last])
        tgt_logp = lm.log_probs(own[:, last])
    idx = torch.arange(3)
    # the last block's output at the last token is what the model decodes: the source's own answer
    torch.testing.assert_close(patched[:, 1], readout(src_logp, idx), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(untouched[:, 0], readout(tgt_logp, idx), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(untouched[:, 1], readout(tgt_logp, idx), atol=1e-5, rtol=1e-4)
    hits = top1_in(SETS)(src_logp, idx)
    assert hits.shape == (3, 4) and set(hits[:, :2].flatten().tolist()) <= {0.0, 1.0}


def test_engines_agree_on_a_sweep(tiny_models):
    tl = tiny_models["gemma2"]
    nn = tl.with_backend("nnsight")
    latents = last_token_latents(tl, SOURCES)
    layers = list(range(tl.n_layers))
    a = patch_sweep(tl, TARGETS, latents, layers, _full_readout, positions=torch.tensor([-2, -2, -2]), cumulative=True)
    b = patch_sweep(nn, TARGETS, latents, layers, _full_readout, positions=torch.tensor([-2, -2, -2]), cumulative=True)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_run_patching_tables_and_evidence(tiny_models, one_thread):
    lm = tiny_models["gemma3"]
    result = run_patching(lm, PatchConfig(n_pairs=5, layers=[0, 2, 3]), progress=False)
    t = result.table
    assert set(t["experiment"]) == {"concept", "mean_latent"}
    assert sorted(t["layer"].unique()) == [0, 2, 3]
    assert (t["n_pairs"] == 5).all()
    concept = t[t["experiment"] == "concept"]
    for col in ("p_src_concept", "p_src_concept_src_lang", "p_tgt_concept", "p_tgt_concept_src_lang"):
        assert ((concept[f"{col}_lo"] <= concept[col] + 1e-12) & (concept[col] <= concept[f"{col}_hi"] + 1e-12)).all()
        assert concept[col].between(0, 1).all() and concept[col].gt(0).all()
    mean = t[t["experiment"] == "mean_latent"]
    assert mean["acc_unpatched"].nunique() == 1 and mean["acc_patched"].between(0, 1).all()
    # the items agree with the summary
    items = result.items[(result.items["experiment"] == "concept") & (result.items["layer"] == 2)]
    assert items["p_tgt_concept"].mean() == pytest.approx(concept.set_index("layer").loc[2, "p_tgt_concept"])
    assert len(set(zip(items["a"], items["b"]))) == 5 and (items["a"] != items["b"]).all()
    assert result.causal["experiments"][0]["n_pairs"] == 5 and result.causal["floor"] == 0.05
    ev = causal_evidence(result.table, floor=0.0)  # a random tiny model moves little mass: read it without the floor
    lo, hi = ev["concept_transfer_layers"]
    assert lo <= ev["experiments"][0]["src_concept_peak_layer"] <= hi


def test_causal_evidence_reads_the_paper_shape():
    layers = range(8)
    p_b = [0.8, 0.8, 0.7, 0.3, 0.1, 0.05, 0.02, 0.01]  # target concept falls at 3
    p_a = [0.0, 0.0, 0.1, 0.4, 0.5, 0.2, 0.1, 0.05]  # source concept rises at 3, peaks at 4
    p_ay = [0.0, 0.0, 0.0, 0.05, 0.1, 0.4, 0.7, 0.8]  # source language wins from 5
    table = pd.DataFrame({"experiment": "concept", "source": "de->ru", "target": "fr->zh", "layer": list(layers),
                          "n_pairs": 10, "p_src_concept": p_a, "p_src_concept_src_lang": p_ay,
                          "p_tgt_concept": p_b, "p_tgt_concept_src_lang": 0.0})
    ev = causal_evidence(table)
    exp = ev["experiments"][0]
    assert exp["tgt_concept_falls_at"] == 3 and exp["src_concept_rises_at"] == 3
    assert exp["concept_transfer_layers"] == [3, 4] and exp["output_language_layer"] == 5
    assert exp["output_language_switch"] == 5 and exp["concept_moves_at"] == 3  # all four quantities read
    switch = table.assign(p_tgt_concept=[0.8, 0.8, 0.1, 0.1, 0.1, 0.05, 0.02, 0.01],  # B leaves Y' at 2 ...
                          p_tgt_concept_src_lang=[0.0, 0.0, 0.6, 0.5, 0.3, 0.1, 0.0, 0.0])  # ... for Y: language first
    assert causal_evidence(switch)["output_language_switch"] == 2
    faint = table.assign(p_src_concept=[v * 0.01 for v in p_a], p_src_concept_src_lang=0.0)  # peak 0.005
    weak = causal_evidence(faint)
    assert weak["concept_transfer_layers"] is None and "under the floor 0.05" in weak["window_note"]
    assert weak["output_language_switch"] is None and weak["concept_moves_at"] is None


def test_patch_cli_writes_outputs_and_rejects_bad_input(tiny_dirs, tmp_path):
    out = tmp_path / "run"
    base = ["patch", "--model", str(tiny_dirs["llama"]), "--n-pairs", "3"]
    ok = runner.invoke(app, base + ["--layers", "1-2", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    for name in ("patching.csv", "patching_items.csv", "report.html", "run_config.yaml"):
        assert (out / name).is_file()
    table = pd.read_csv(out / "patching.csv")
    assert {"p_src_concept", "p_src_concept_lo", "p_src_concept_hi", "p_tgt_concept_src_lang_hi",
            "acc_patched", "acc_unpatched", "n_pairs"} <= set(table.columns)
    assert sorted(table["layer"].unique()) == [1, 2]
    again = runner.invoke(app, base + ["--layers", "1", "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    # the settings as run, in the form --config reads back into the same PatchConfig
    saved = read_run_config(out / "run_config.yaml")
    assert saved["layers"] == [1, 2] and saved["n_pairs"] == 3 and saved["concept"] == [[["de", "ru"], ["fr", "zh"]]]
    assert saved["mean_target"] == ["fr", "zh"] and saved["model"] == str(tiny_dirs["llama"])
    assert PatchConfig(**{k: v for k, v in saved.items() if k in PatchConfig.__dataclass_fields__}) != PatchConfig()
    for value, parsed in (("de:ru>fr:zh,es:en>ja:zh", [(("de", "ru"), ("fr", "zh")), (("es", "en"), ("ja", "zh"))]),
                          ([[["de", "ru"], ["fr", "zh"]]], [(("de", "ru"), ("fr", "zh"))])):
        assert parse_experiments(value) == parsed
    assert parse_layers("0,4-6") == [0, 4, 5, 6] and parse_layers([3, 1]) == [3, 1] and parse_layers("") is None
    rerun = runner.invoke(app, ["patch", "--config", str(out / "run_config.yaml"), "--layers", "1", "--overwrite"])
    assert rerun.exit_code == 0, rerun.output
    assert read_run_config(out / "run_config.yaml") == {**saved, "layers": [1]}
    assert sorted(pd.read_csv(out / "patching.csv")["layer"].unique()) == [1]

    for args, message in [
        (["--layers", "0,9"], "out of range"),
        (["--pairs", "fr:fr>de:zh"], "two different languages"),
        (["--mean-target", "zh"], "two different languages"),
        (["--mean-sources", "de:ja,ru:ru"], "two different languages"),
        (["--pairs", "de:zh>fr:zh"], "different output"),
    ]:
        bad = runner.invoke(app, base + args + ["--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2, (args, bad.output)
        assert message in bad.output and "Traceback" not in bad.output
        assert not (tmp_path / "bad" / "patching.csv").exists()


def test_probe_causal_adds_patching_evidence(tiny_dirs, tmp_path):
    import json

    out = tmp_path / "probe"
    result = runner.invoke(app, ["probe", "--model", str(tiny_dirs["gemma3"]), "--pairs", "fr:zh", "--tasks",
                                 "translation", "--no-probes", "--max-items", "4", "--causal", "--causal-pairs", "3",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    layers = json.loads((out / "layers.json").read_text())
    causal = layers["evidence"]["causal"]
    assert causal["experiments"][0]["n_pairs"] == 3 and causal["mean_latent"]["n_pairs"] == 3
    window = causal["concept_transfer_layers"]
    if window is None:  # a random tiny model: the reading stays under the floor and says so
        assert "under the floor" in causal["window_note"] and "lc_before_concept_transfer" not in causal
    else:
        assert 0 <= window[0] <= window[1] < layers["n_layers"]
        assert causal["lc_before_concept_transfer"] == (layers["lc_layer"] <= window[1])
    assert "patching:" in result.stdout  # the terminal summary has a line for it
    assert "Activation patching (probe --causal)" in (out / "report.html").read_text()



def test_first_token_sets_follow_the_tokenizer_and_give_smaller_sets(tiny_models):
    """--token-sets first (Dumas et al.): each answer set is the tokenizer's first token of the
    word and of " word", never larger than the prefix set's ordinary tokens plus those."""
    from dftlens.analysis.patch_pairs import concept_pairs
    from dftlens.analysis.token_sets import TokenSets
    from dftlens.data.parallel import load_words

    lm = tiny_models["gemma3"]
    words = load_words(languages=["en", "de", "ru", "fr", "zh"])
    first = TokenSets(lm.tokenizer, kind="first")
    pairs = concept_pairs(words, ("de", "ru"), ("fr", "zh"), first, n_pairs=5, seed=0)
    assert len(pairs) == 5
    row = dict(zip(words.ids, words.rows))
    for pair in pairs:
        word = row[pair["a"]]["zh"]
        tokens = lm.tokenizer.convert_ids_to_tokens(sorted(pair["sets"][0]))
        # One or two tokens (with and without the space marker), each a start of the word.
        assert 1 <= len(tokens) <= 2 and all(word.startswith(t.lstrip("▁")) and t.lstrip("▁") for t in tokens)
        assert pair["sets"][0] == first.first_ids(word)
        assert not (set().union(*pair["sets"][:2]) & set().union(*pair["sets"][2:]))
    result = run_patching(lm, PatchConfig(n_pairs=3, layers=[1], mean_target=None, token_sets="first"), progress=False)
    assert result.config.token_sets == "first" and (result.table["n_pairs"] == 3).all()
    with pytest.raises(DataError, match="--token-sets"):
        check_config(PatchConfig(token_sets="last"), lm.n_layers)


def test_patch_refuses_layers_before_loading_and_exports_named_figures(tiny_dirs, tmp_path, monkeypatch):
    import dftlens

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before --layers was checked")

    base = ["patch", "--model", str(tiny_dirs["llama"]), "--n-pairs", "2"]
    with monkeypatch.context() as m:
        m.setattr(dftlens, "load_model", no_load)
        bad = runner.invoke(app, base + ["--layers", "0,30", "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and "Layer 30 is out of range" in bad.output, bad.output
        fmt = runner.invoke(app, base + ["--figure-format", "png,gif", "--out", str(tmp_path / "bad")])
        assert fmt.exit_code == 2 and "gif" in fmt.output
    out = tmp_path / "run"
    ok = runner.invoke(app, base + ["--layers", "1", "--pairs", "de:ru>fr:zh", "--mean-target", "none",
                                    "--figure-format", "svg", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    name = f"patch-{tiny_dirs['llama'].name}-concept-de-ru-into-fr-zh"
    svg = (out / "figures" / f"{name}.svg").read_text()
    assert tiny_dirs["llama"].name in svg and "concept patching: de" in svg  # the file and its title name model and run
    assert "figures/*.{svg}" in ok.output
    for line in ok.stdout.replace("\r", "\n").splitlines():  # progress bars redraw with \r on stderr
        assert len(line.rstrip()) <= 80, line  # the summary reads at 80 columns and in a log file
    assert "P(A,Y')" in ok.output and "acc" not in ok.output  # only the experiment run is shown
