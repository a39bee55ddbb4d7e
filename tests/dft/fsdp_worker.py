"""Run by tests/dft/test_fsdp_cpu.py under torch.distributed.run (not a test module).

FSDP2 (``fully_shard`` on every decoder layer, found by dftlens's family table) on CPU/gloo: the DFT losses go
through dftlens's engine hooks on the sharded model; prints one JSON line per
signal combination with the sharded and the unsharded loss and the largest
gradient difference (sharded gradients gathered with ``full_tensor``).
"""

import json
import sys

import torch
import torch.distributed as dist

model_dir, data_file = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo")
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402

from dftlens import load_model  # noqa: E402
from dftlens.data.instruction_files import load_instructions  # noqa: E402
from dftlens.data.instructions import PromptFormat, encode_pairs  # noqa: E402
from dftlens.dft.batches import collate  # noqa: E402
from dftlens.dft.loss_terms import step_norm  # noqa: E402
from dftlens.dft.losses import DFTLoss  # noqa: E402
from dftlens.dft.distributed import shard_decoder_layers  # noqa: E402
from dftlens.layers import LayerChoice  # noqa: E402

torch.set_num_threads(1)
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
sharded, ref = load_model(model_dir, device="cpu"), load_model(model_dir, device="cpu")
n_sharded_layers = shard_decoder_layers(sharded, mesh)  # the family table's layer path (dftlens's own code)
lc_layer, et_layer = sharded.n_layers - 2, sharded.n_layers - 1
tok = sharded.tokenizer
pairs = encode_pairs(load_instructions(data_file, "zh"), PromptFormat(tok), 256)
for lc, et in (("feature", "logits"), ("logits", "feature")):
    batch = collate(pairs[:4], lc, et, tok.pad_token_id, tok.bos_token_id)
    norm = step_norm([batch], lc, et)
    values = {}
    for name, lm in (("sharded", sharded), ("reference", ref)):
        lm.hf_model.zero_grad(set_to_none=True)
        loss = DFTLoss(lm, LayerChoice("tiny", lm.n_layers, lc_layer, et_layer), lc_signal=lc, et_signal=et)
        values[name] = loss.backward(batch, norm=norm)
    ref_grads = dict(ref.hf_model.named_parameters())
    diff, n_sharded = 0.0, 0
    for name, p in sharded.hf_model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        n_sharded += hasattr(p.grad, "full_tensor")
        r = ref_grads[name].grad
        diff = max(diff, float((g.to_dense() - r.to_dense()).abs().max()))
    if dist.get_rank() == 0:
        print(json.dumps({"lc": lc, "et": et, **values, "max_grad_diff": diff, "sharded_grads": n_sharded,
                          "sharded_layers": n_sharded_layers, "n_layers": sharded.n_layers}), flush=True)
dist.destroy_process_group()
