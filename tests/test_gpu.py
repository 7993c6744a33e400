"""Tests that need a CUDA GPU (marker `gpu`; skipped without one). Run them on the GPU machine."""

import dataclasses

import pytest
import torch

from conftest import TINY, losses, read_metrics, run_trainer
from train_gpt2_mod import GPT, MODEL_CONFIGS, make_optimizer

pytestmark = pytest.mark.gpu


def small(name="d12"):
    return dataclasses.replace(MODEL_CONFIGS[name], n_layer=2, n_head=4, n_embd=256, block_size=256)


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_compiles_without_graph_breaks(name):
    torch.manual_seed(0)
    model = GPT(small(name)).cuda()
    compiled = torch.compile(model, fullgraph=True, dynamic=False)  # fullgraph: a graph break is an error
    idx = torch.randint(0, 50257, (4, 256), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = compiled(idx, idx)
    loss.backward()
    assert torch.isfinite(loss)


def test_bf16_cuda_matches_fp32_cpu():
    torch.manual_seed(0)
    model = GPT(small())
    idx = torch.randint(0, 50257, (2, 128))
    with torch.no_grad():
        ref, ref_loss = model(idx, idx)
        model.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, loss = model(idx.cuda(), idx.cuda())
    rel = (out.float().cpu() - ref).norm() / ref.norm()
    assert rel < 2e-2
    assert abs(loss.item() - ref_loss.item()) < 2e-2


def test_adamw_is_fused_on_cuda():
    model = GPT(small()).cuda()
    assert make_optimizer(model, 1e-3, 0.1, "cuda").defaults["fused"] is True


def test_trainer_with_compile_learns_on_gpu(tmp_path):
    run_trainer(*TINY, "--device", "cuda", "--compile", "1", "--num_iterations", "30", "--warmup_iters", "3", "--learning_rate", "3e-3", "--val_loss_every", "0", "--val_tokens", "8192", "--output_dir", str(tmp_path))
    train = losses(read_metrics(tmp_path))
    assert train[30] < train[1] - 2.0
