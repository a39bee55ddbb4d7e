"""The DFT trainer on tiny models: resume, Ctrl-C, checkpoints, LoRA, frozen embeddings."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from dft_data import instruction_rows, write_jsonl
from safetensors.torch import load_file

from dftlens import load_model
from dftlens.config_files import read_run_config
from dftlens.dft.config import TrainConfig
from dftlens.dft.run_dir import resume_config
from dftlens.dft.session import micro_batch_indices
from dftlens.dft.trainer import TrainingInterrupted, lr_at, train
from dftlens.errors import DftlensError, OutputExists

CURVE = ("loss", "tft", "lc", "et", "lr", "grad_norm")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return str(write_jsonl(tmp_path_factory.mktemp("dft_train") / "pairs.jsonl", instruction_rows(6)))


def config(tmp_path, name, model_dir, data_file, **kw):
    base = dict(out=str(tmp_path / name), model=str(model_dir), data=data_file, lang="zh", lc_layer=1,
                et_layer=2, steps=6, batch_size=2, grad_accum=2, lr=1e-3, warmup_ratio=0.2, progress=None)
    base.pop("progress")
    base.update(kw)
    return TrainConfig(**base)


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def interrupt_at(step):
    def on_step(record):
        if record["step"] == step:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    return on_step


def assert_resume_matches(tmp_path, cfg_kwargs, stop_at):
    full = train(config(tmp_path, "full", **cfg_kwargs), progress=False)
    cut = config(tmp_path, "cut", **cfg_kwargs)
    with pytest.raises(TrainingInterrupted) as info:
        train(cut, on_step=interrupt_at(stop_at), progress=False)
    assert info.value.step == stop_at and info.value.checkpoint.name == f"checkpoint-{stop_at:06d}"
    assert len(read_log(tmp_path / "cut")) == stop_at
    resumed = train(resume_config(tmp_path / "cut"), resume=tmp_path / "cut", progress=False)
    a, b = read_log(full.out), read_log(resumed.out)
    assert [r["step"] for r in b] == list(range(1, cfg_kwargs.get("steps", 6) + 1))
    for ra, rb in zip(a, b):
        assert {k: ra.get(k) for k in CURVE} == {k: rb.get(k) for k in CURVE}, (ra, rb)
    return full, resumed


def test_full_finetuning_resume_after_ctrl_c_reproduces_the_curve(tmp_path, tiny_dirs, data_file):
    full, resumed = assert_resume_matches(
        tmp_path, dict(model_dir=tiny_dirs["gemma3"], data_file=data_file, lc_signal="feature", et_signal="logits"), stop_at=3)
    wa, wb = load_file(str(full.final / "model.safetensors")), load_file(str(resumed.final / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    log = read_log(full.out)
    assert all({"loss", "tft", "lc", "et", "lr", "grad_norm"} <= r.keys() for r in log)
    assert log[-1]["tft"] < log[0]["tft"]

    # The final checkpoint is an ordinary HF directory; dftlens loads it too.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(full.final))
    lm = load_model(str(full.final))
    batch = lm.tokenize(["le chat dort"])
    with torch.no_grad():
        torch.testing.assert_close(lm.forward_logits(batch), model(**batch).logits)
    assert json.loads((full.final / "run_config.json").read_text())["lc_signal"] == "feature"


def test_lora_resume_with_dropout_reproduces_the_curve(tmp_path, tiny_dirs, data_file):
    assert_resume_matches(
        tmp_path, dict(model_dir=tiny_dirs["llama"], data_file=data_file, lc_signal="logits", et_signal="feature", lora=True,
                       lora_r=4, lora_dropout=0.1, steps=4), stop_at=2)


def test_lora_merged_and_adapter_checkpoints_agree(tmp_path, tiny_dirs, data_file):
    from transformers import AutoModelForCausalLM

    kw = dict(model_dir=tiny_dirs["gemma2"], data_file=data_file, lc_signal="logits", et_signal="logits", lora=True, lora_r=4,
              steps=2, lora_targets="q_proj,v_proj,down_proj")
    merged = train(config(tmp_path, "merged", **kw), progress=False).final
    adapter = train(config(tmp_path, "adapter", save_adapter=True, **kw), progress=False).final
    assert (adapter / "adapter_config.json").exists() and not (adapter / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_dirs["gemma2"]))
    a = AutoModelForCausalLM.from_pretrained(str(merged))
    b = AutoModelForCausalLM.from_pretrained(str(adapter))  # transformers applies the adapter to the base
    ids = torch.tensor([[2, 50, 60, 70, 80]])
    with torch.no_grad():
        la, lb, l0 = a(ids).logits, b(ids).logits, base(ids).logits
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(la, l0)  # training changed something
    # Every dftlens verb takes the adapter directory as --model (load_model merges it into its base).
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_dirs["gemma2"])
    lm = load_model(str(adapter))
    with torch.no_grad():
        torch.testing.assert_close(lm.forward_logits({"input_ids": ids, "attention_mask": torch.ones_like(ids)}), la,
                                   rtol=1e-4, atol=1e-5)


def test_final_is_lean_and_gradient_checkpointing_keeps_the_curve(tmp_path, tiny_dirs, data_file):
    """final/: weights, tokenizer, run config (0644), no optimizer state; checkpoints keep it for resuming."""
    kw = dict(lc_signal="feature", et_signal="logits", steps=2, save_every=1)
    plain = train(config(tmp_path, "plain", tiny_dirs["llama"], data_file, **kw), progress=False)
    ckpt = train(config(tmp_path, "ckpt", tiny_dirs["llama"], data_file, gradient_checkpointing=True, **kw),
                 progress=False)
    # Recomputation changes float rounding only (gradients agree to ~6e-7 of their largest entry), but
    # AdamW's first step is nearly sign(grad), so an entry near 0 may move by +-lr: hence 1e-5 after a step.
    for a, b in zip(read_log(plain.out), read_log(ckpt.out)):
        assert {k: a[k] for k in CURVE} == pytest.approx({k: b[k] for k in CURVE}, rel=1e-5)
    names = {p.name for p in plain.final.iterdir()}
    assert "trainer_state" not in names and not any(n.endswith((".pt", ".bin")) for n in names)
    assert {"config.json", "model.safetensors", "run_config.json", "tokenizer.json"} <= names
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in plain.final.iterdir())
    assert (plain.out / "checkpoint-000001" / "trainer_state" / "optimizer.pt").exists()
    weights = load_file(str(plain.final / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())  # CPU: trained in float32
    base = os.path.getsize(tiny_dirs["llama"] / "model.safetensors")
    assert os.path.getsize(plain.final / "model.safetensors") == pytest.approx(base, rel=0.01)


def test_freeze_embeddings_keeps_them(tmp_path, tiny_dirs, data_file):
    run = train(config(tmp_path, "frozen", tiny_dirs["gemma3"], data_file, lc_signal="feature", et_signal="feature", steps=1,
                       grad_accum=1, freeze_embeddings=True), progress=False)
    before = load_file(str(tiny_dirs["gemma3"] / "model.safetensors"))
    after = load_file(str(run.final / "model.safetensors"))
    key = "model.embed_tokens.weight"
    assert torch.equal(before[key], after[key])
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])


def test_refuses_to_overwrite_a_run(tmp_path, tiny_dirs, data_file):
    cfg = config(tmp_path, "once", tiny_dirs["llama"], data_file, lc_signal="off", et_signal="off", steps=1, grad_accum=1)
    train(cfg, progress=False)
    with pytest.raises(OutputExists, match="--overwrite"):
        train(cfg, progress=False)
    train(cfg, overwrite=True, progress=False)
    assert [r["step"] for r in read_log(tmp_path / "once")] == [1]


def test_schedule_and_data_order():
    cfg = TrainConfig(steps=10, lr=1.0, warmup_ratio=0.2, lc_signal="off", et_signal="off")
    lrs = [lr_at(cfg, s) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0] and all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] > 0
    seen = [i for k in range(5) for i in micro_batch_indices(10, 3, k, 2)]
    assert sorted(seen) == list(range(10))  # one epoch covers every example once
    assert micro_batch_indices(10, 3, 7, 2) == micro_batch_indices(10, 3, 7, 2)
    assert micro_batch_indices(10, 3, 0, 4) != micro_batch_indices(10, 4, 0, 4)


def test_two_processes_match_one_big_batch(tmp_path, tiny_dirs, data_file):
    """Data parallelism: 2 processes x batch 1 x accum 2 == 1 process x batch 4 (loss and gradient norm)."""
    import subprocess
    import sys
    from pathlib import Path

    args = ["--model", str(tiny_dirs["gemma3"]), "--data", data_file, "--lc-layer", "1", "--et-layer", "2",
            "--steps", "2", "--batch-size", "1", "--grad-accum", "2", "--lr", "1e-3", "--no-progress"]
    dftlens = str(Path(sys.executable).parent / "dftlens")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--no-python", dftlens]
    proc = subprocess.run(launch + ["train", *args, "--out", str(tmp_path / "ddp")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("model saved in") == 1  # only rank 0 reports
    train(TrainConfig(out=str(tmp_path / "one"), model=str(tiny_dirs["gemma3"]), data=data_file, lc_layer=1,
                      et_layer=2, steps=2, batch_size=4, grad_accum=1, lr=1e-3), progress=False)
    ddp, one = read_log(tmp_path / "ddp"), read_log(tmp_path / "one")
    assert len(ddp) == len(one) == 2
    for a, b in zip(ddp, one):
        for key in CURVE:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key


def test_fsdp2_on_cpu_matches_one_process_and_resumes_bit_for_bit(tmp_path, tiny_dirs, data_file):
    """`accelerate launch` with configs/accelerate/fsdp2_cpu_2proc.yaml: decoder layers sharded (FSDP2, gloo).

    2 processes x batch 1 x accum 2 == 1 process x batch 4; a run cut after step 1 and resumed
    (each process reloads its optimizer shard) ends with the same curve and the same final weights.
    """
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    config_file = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "fsdp2_cpu_2proc.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file), "-m",
              "dftlens_cli", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = ["--model", str(tiny_dirs["llama"]), "--data", data_file, "--lc-layer", "1", "--et-layer", "2",
            "--steps", "3", "--batch-size", "1", "--grad-accum", "2", "--lr", "1e-3", "--save-every", "1",
            "--no-progress"]

    def run(*extra):
        proc = subprocess.run(launch + list(extra), env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    run(*args, "--out", str(tmp_path / "fsdp"))
    state = json.loads((tmp_path / "fsdp" / "checkpoint-000002" / "trainer_state" / "state.json").read_text())
    assert state["optimizer_shards"] == 2  # really sharded: one AdamW shard per process
    train(config(tmp_path, "one", tiny_dirs["llama"], data_file, lc_signal="feature", et_signal="logits", steps=3, batch_size=4,
                 grad_accum=1), progress=False)
    fsdp, one = read_log(tmp_path / "fsdp"), read_log(tmp_path / "one")
    for a, b in zip(fsdp, one):
        for key in CURVE:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "fsdp", cut)
    shutil.rmtree(cut / "checkpoint-000002")
    shutil.rmtree(cut / "final")
    run("--resume", str(cut / "checkpoint-000001"), "--no-progress")
    assert [{k: r[k] for k in CURVE} for r in read_log(cut)] == [{k: r[k] for k in CURVE} for r in fsdp]
    wa, wb = load_file(str(tmp_path / "fsdp" / "final" / "model.safetensors")), load_file(str(cut / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_adapter_names_the_hugging_face_id_of_its_base(tmp_path):
    from dftlens.dft.prepare import base_model_id
    from dftlens.models.aliases import lookup

    cache = tmp_path / "converted"
    assert base_model_id("gemma3-270m", cache) == lookup("gemma3-270m").hf_id != str(cache)
    assert base_model_id("meta-llama/Llama-2-7b-hf", cache) == "meta-llama/Llama-2-7b-hf"
    assert base_model_id(str(tmp_path), tmp_path) == str(tmp_path)  # a local directory stays a path


def test_train_takes_a_loaded_model_and_trains_it_in_place(tmp_path, tiny_dirs, data_file):
    """train(cfg, lm): the curve of train(cfg) loading by name, for a model loaded with or without an engine;
    lm ends with final/'s weights; resume, LoRA on an engine's model and another dtype are refused first."""
    from transformers import AutoModelForCausalLM

    kw = dict(data_file=data_file, lc_signal="feature", et_signal="logits", steps=2)
    by_name = train(config(tmp_path, "by_name", model_dir=tiny_dirs["gemma3"], **kw), progress=False)
    for backend in (None, "transformer_lens"):
        lm = load_model(str(tiny_dirs["gemma3"]), backend=backend, device="cpu", dtype="float32")
        cfg = config(tmp_path, f"given_{backend}", model_dir="gemma3-270m", **kw)  # train records lm.name instead
        given = train(cfg, lm, progress=False)
        assert [{k: r[k] for k in CURVE} for r in given.log] == [{k: r[k] for k in CURVE} for r in by_name.log]
        ids = torch.tensor([[2, 50, 60, 70, 80]])
        with torch.no_grad():  # trained in place: lm computes what final/ does, not what it did before
            ours, saved = lm.hf_model(input_ids=ids).logits, AutoModelForCausalLM.from_pretrained(str(given.final))(ids).logits
            torch.testing.assert_close(ours, saved)
            assert not torch.allclose(ours, AutoModelForCausalLM.from_pretrained(str(tiny_dirs["gemma3"]))(ids).logits)
        assert read_run_config(given.out / "run_config.yaml")["model"] == lm.name
    with pytest.raises(DftlensError, match="resume"):
        train(cfg, lm, resume=given.out, progress=False)
    with pytest.raises(DftlensError, match="trains as loaded \\(lora\\)"):
        train(config(tmp_path, "lora", model_dir="x", lora=True, **kw), lm, progress=False)
    half = load_model(str(tiny_dirs["gemma3"]), device="cpu", dtype="bfloat16")
    with pytest.raises(DftlensError, match="bfloat16 but the run trains in float32"):
        train(config(tmp_path, "half", model_dir="x", **kw), half, progress=False)
    assert not (tmp_path / "lora").exists() and not (tmp_path / "half").exists()  # refused before writing
