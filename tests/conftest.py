import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# a model small enough for a 2-core CPU, with the flags every test run shares
TINY = ["--model", "d12", "--n_layer", "2", "--n_head", "2", "--n_embd", "64", "--sequence_length", "64", "--batch_size", "4"]
# ...and for short training runs: a quick warmup, a high learning rate, a small val set
SHORT_TRAIN = [*TINY, "--warmup_iters", "2", "--learning_rate", "3e-3", "--val_tokens", "4096"]


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def run_trainer(*flags, launcher=(sys.executable,), check=True):
    """Run train_gpt2_mod.py in a subprocess; return the CompletedProcess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([*launcher, str(REPO / "train_gpt2_mod.py"), *flags], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"trainer failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def read_metrics(output_dir):
    return [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]


def losses(records, key="train_loss"):
    return {r["step"]: r[key] for r in records if key in r}


def masked_attention_fp32(q, k, v, window):
    """The ground truth for the GPU attention kernels: fp32 attention under an explicit causal
    (window) mask, on (B, T, H, D) tensors."""
    import train_gpt2_mod as m

    pos = torch.arange(q.size(1), device=q.device)
    return m.sdpa(q.float(), k.float(), v.float(), m.window_mask(pos, pos, window))


LOSS_FUNCTIONS = ("chunked_cross_entropy", "quack_cross_entropy")  # run outside the model's graph


def only_the_loss_breaks_the_graph():
    """Whether torch.compile, since counters.clear(), broke the graph at the planned place and
    nowhere else: the loss runs outside the model's graph (the chunked loss's chunks compile as
    graphs of their own). Nothing compiled is not a pass."""
    from torch._dynamo.utils import counters

    planned = [any(name in r for name in LOSS_FUNCTIONS) for r in counters["graph_break"]]
    return bool(planned) and all(planned)
