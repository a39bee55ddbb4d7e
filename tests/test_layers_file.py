"""dftlens.layers: the one reader/writer of layers.json, every bad file one sentence."""

from __future__ import annotations

import json

import pytest

from dftlens.errors import DataError, DftlensError, LayerError
from dftlens.layers import LayerChoice, check_order

GOOD = {"model": "m", "n_layers": 6, "lc_layer": 1, "et_layer": 4, "languages": ["en", "zh"],
        "evidence": {"lc_decided_by": "alignment"},
        "hooks": {"lc": "blocks.1.hook_resid_mid", "et": "blocks.4.hook_resid_post"}}


def write(tmp_path, obj, name="layers.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def test_round_trip_keeps_a_site_per_signal_and_the_dict_format(tmp_path):
    choice = LayerChoice.load(write(tmp_path, GOOD))
    assert (choice.lc_layer, choice.et_layer, choice.lc_site, choice.et_site) == (1, 4, "resid_mid", "resid_post")
    written = choice.to_dict()  # the probe's format: the file's fields, evidence in its typed layout
    assert {k: v for k, v in written.items() if k not in ("evidence", "provisional")} == \
        {k: v for k, v in GOOD.items() if k != "evidence"}
    assert written["provisional"] is False and written["evidence"]["lc_decided_by"] == "alignment"
    again = LayerChoice.load(choice.save(tmp_path / "copy.json"))
    assert again.hooks == GOOD["hooks"] and again.evidence == choice.evidence
    assert LayerChoice.load(tmp_path).hooks == GOOD["hooks"]  # a probe directory works too


@pytest.mark.parametrize("change, phrase", [
    ({"hooks": "blocks.1.hook_resid_post"}, "'hooks' must be an object"),
    ({"hooks": None}, "has no 'hooks'"),
    ({"hooks": {"lc": "blocks.1.hook_resid_post"}}, "hooks.et must be a hook name"),
    ({"hooks": {"lc": "layer1", "et": "blocks.4.hook_resid_post"}}, "not a dftlens hook name"),
    ({"hooks": {"lc": "blocks.4.hook_resid_post", "et": "blocks.1.hook_resid_post"}, "lc_layer": 4,
      "et_layer": 1}, "must come before"),
    ({"n_layers": "six"}, "'n_layers' must be a positive whole number"),
    ({"n_layers": 3}, "the ET layer 4 is out of range: the model has blocks 0..2"),
    ({"lc_layer": 2}, "'lc_layer' is 2 but hooks.lc names block 1"),
    ({"languages": "en"}, "'languages' must be a list"),
    ({"evidence": []}, "'evidence' must be an object"),
])
def test_bad_fields_are_one_sentence(tmp_path, change, phrase):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(DftlensError, match=phrase.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        LayerChoice.load(write(tmp_path, data))


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="does not exist; run `dftlens probe` first"):
        LayerChoice.load(tmp_path / "none.json")
    with pytest.raises(DataError, match=r"layers.json is damaged: not valid JSON \(Expecting .* line 1, column 2\)"):
        LayerChoice.load(write(tmp_path, "{oops"))
    with pytest.raises(DataError, match="must hold a JSON object, not a list"):
        LayerChoice.load(write(tmp_path, [1]))
    bad = tmp_path / "cp1252.json"
    bad.write_bytes(json.dumps({**GOOD, "model": "caf\u00e9"}, ensure_ascii=False).encode("cp1252"))
    with pytest.raises(DataError, match="cp1252.json is damaged: not UTF-8 text; save it as UTF-8"):
        LayerChoice.load(bad)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    assert LayerChoice.load(bom).lc_layer == 1


def test_model_and_order_checks():
    choice = LayerChoice.from_dict(GOOD)
    with pytest.raises(LayerError, match="written for a model with 6 layers, but tiny has 4"):
        choice.check_model(4, "tiny")
    check_order(1, 2, 4)
    with pytest.raises(LayerError, match="must come before"):
        check_order(3, 2)
    with pytest.raises(LayerError, match="out of range: the model has blocks 0..3"):
        check_order(1, 4, 4)
