"""Tests that need a CUDA GPU (marker `gpu`; skipped without one). Run them on the GPU machine."""

import dataclasses
import json
import subprocess
import sys
import time

import pytest
import torch

from torch._dynamo.utils import counters

from conftest import REPO, SHORT_TRAIN, TINY, losses, masked_attention_fp32, only_the_loss_breaks_the_graph, read_metrics, run_trainer
from train_gpt2_mod import GPT, MODEL_CONFIGS, make_optimizer

pytestmark = pytest.mark.gpu


def small(name="d12"):
    config = dataclasses.replace(MODEL_CONFIGS[name], n_layer=2, n_head=4, n_embd=256, block_size=256)
    if config.sliding_window:  # a window shorter than the sequence, so the windowed kernel runs
        config = dataclasses.replace(config, sliding_window=64, global_attn_every=2)
    return config


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_compiles_without_graph_breaks(name):
    import train_gpt2_mod as m

    torch.manual_seed(0)
    torch._dynamo.reset()
    counters.clear()
    model = GPT(small(name)).cuda().set_kernels("auto", "cuda", torch.bfloat16)
    if any(isinstance(block.attn.kernel, m.FlexAttention) for block in model.transformer.h):
        pytest.skip("without flash-attn the window runs on flex_attention, whose block mask is built outside the graph")
    compiled = torch.compile(model, dynamic=False)
    idx = torch.randint(0, 50257, (4, 256), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = compiled(idx, idx, return_logits=False)  # training's path
        compiled(idx, idx)  # HellaSwag's, with the whole batch's logits
    loss.backward()
    assert torch.isfinite(loss)
    assert only_the_loss_breaks_the_graph()


def test_compiled_loss_holds_few_chunks_of_logits(monkeypatch):
    """Compiled, the chunked loss runs its chunks one after another: what the forward pass needs
    beyond what it keeps for backward is a couple of chunks' logits, not all of them."""
    import train_gpt2_mod as m

    monkeypatch.setattr(m, "LOSS_CHUNK_ROWS", 512)
    torch._dynamo.reset()
    model = GPT(dataclasses.replace(small(), n_embd=64, n_head=4)).cuda()
    compiled = torch.compile(model, dynamic=False)
    idx = torch.randint(0, 50257, (16, 256), device="cuda")  # 4096 rows: 8 chunks

    def forward():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return compiled(idx, idx, return_logits=False)[1]

    forward().backward()  # compiles
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    loss = forward()  # alive: what it keeps for backward is counted as kept
    kept = torch.cuda.memory_allocated() - before
    transient = torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()
    loss.backward()
    chunk_logits = 512 * model.config.vocab_size * 2  # one chunk's logits in bf16: 51.5 MB
    # 1.4.0, with the chunks inside the model's graph: 486 MiB beyond 34 kept; now 137
    assert transient < 4 * chunk_logits, f"{transient / 2**20:.0f} MiB beyond the {kept / 2**20:.0f} MiB kept"


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


def test_chunked_loss_matches_full_logits_compiled_in_bf16():
    torch.manual_seed(0)
    model = GPT(small()).cuda()
    compiled = torch.compile(model, dynamic=False)
    idx = torch.randint(0, 50257, (16, 256), device="cuda")  # 4096 rows: one full chunk of the loss

    def loss_and_grads(return_logits):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = compiled(idx, idx, return_logits=return_logits)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])

    full_loss, full = loss_and_grads(True)
    chunked_loss, chunked = loss_and_grads(False)
    assert abs(chunked_loss - full_loss) < 1e-3
    assert (chunked - full).norm() / full.norm() < 1e-2  # bf16 matmuls on both sides


def test_trainer_with_recompute_learns_on_gpu(tmp_path):
    run_trainer(*TINY, "--device", "cuda", "--compile", "1", "--recompute", "1", "--num_iterations", "30", "--warmup_iters", "3", "--learning_rate", "3e-3", "--val_loss_every", "0", "--val_tokens", "8192", "--output_dir", str(tmp_path))
    train = losses(read_metrics(tmp_path))
    assert train[30] < train[1] - 2.0


def test_adamw_is_fused_on_cuda():
    model = GPT(small()).cuda()
    assert make_optimizer(model, 1e-3, 0.1, "cuda").defaults["fused"] is True


def test_trainer_with_compile_learns_on_gpu(tmp_path):
    run_trainer(*TINY, "--device", "cuda", "--compile", "1", "--num_iterations", "30", "--warmup_iters", "3", "--learning_rate", "3e-3", "--val_loss_every", "0", "--val_tokens", "8192", "--output_dir", str(tmp_path))
    train = losses(read_metrics(tmp_path))
    assert train[30] < train[1] - 2.0


@pytest.mark.parametrize("kernels", ["auto", "pytorch"])
def test_cuda_graphs_train_and_validate_as_without(tmp_path, kernels):
    """--cuda_graphs 1 replays the compiled graphs (training, and validation between steps): the
    losses are those of the same run without them."""
    runs = {}
    for graphs in ("0", "1"):
        out = tmp_path / graphs
        run_trainer(*TINY, "--device", "cuda", "--compile", "1", "--cuda_graphs", graphs, "--kernels", kernels, "--num_iterations", "8", "--warmup_iters", "2", "--learning_rate", "3e-3", "--val_loss_every", "4", "--val_tokens", "8192", "--output_dir", str(out))
        runs[graphs] = read_metrics(out)
    for key in ("train_loss", "val_loss"):
        without, with_graphs = losses(runs["0"], key), losses(runs["1"], key)
        assert without.keys() == with_graphs.keys() and len(without) > 1
        assert all(abs(without[step] - with_graphs[step]) < 1e-3 for step in without), (key, without, with_graphs)


@pytest.mark.parametrize("T, window", [(1024, 256), (2048, 1000), (512, 1)])
def test_flash_window_and_flex_attention_agree(T, window):
    import train_gpt2_mod as m

    if m.flash_attn_func is None:
        pytest.skip("flash-attn is not installed")
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, T, 4, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    grad = torch.randn(2, T, 4, 64, device="cuda", dtype=torch.bfloat16)

    def run(kernel):
        out = kernel(q, k, v)
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
        return out, dq, dk, dv

    flash, flex = run(m.FlashAttention2(window)), run(m.FlexAttention(window))
    ref = masked_attention_fp32(q, k, v, window)
    for a, b in zip(flash, flex):
        assert (a.float() - b.float()).norm() / b.float().norm() < 1e-2
    assert (flash[0].float() - ref).norm() / ref.norm() < 1e-2
    assert (flex[0].float() - ref).norm() / ref.norm() < 1e-2


@pytest.mark.parametrize("changes", [dict(), dict(qk_norm=True), dict(use_flash_mla=True), dict(use_flash_mla=True, qk_norm=True, q_lora_rank=384)])
@pytest.mark.parametrize("window", [0, 256])
def test_flash_attn_and_sdpa_kernels_agree(changes, window):
    """The same layer through flash-attn and through SDPA (flex_attention for the window), bf16."""
    import train_gpt2_mod as m

    if m.flash_attn_func is None:
        pytest.skip("flash-attn is not installed")
    torch.manual_seed(0)
    config = dataclasses.replace(MODEL_CONFIGS["d12"], n_layer=1, sliding_window=window, **changes)
    model = GPT(config).cuda()
    x = torch.randn(4, 1024, 768, device="cuda")
    results = []
    for backend, flash_class in (("flash_attn", True), ("sdpa", False)):
        attn = model.set_kernels(backend, "cuda", torch.bfloat16).transformer.h[0].attn
        assert type(attn).__name__.startswith("Flash") == flash_class
        attn.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = attn(xi)
        out.float().pow(2).mean().backward()
        results.append((out.float(), xi.grad, attn.c_proj.weight.grad))
    for a, b in zip(*results):
        assert (a - b).norm() / b.norm() < 2e-2


def test_hellaswag_on_gpu_during_training_and_eval_only(tmp_path):
    import json

    from test_hellaswag import write_examples

    data = write_examples(tmp_path / "hs.jsonl")
    out = tmp_path / "run"
    flags = [*TINY, "--device", "cuda", "--warmup_iters", "1", "--val_tokens", "8192", "--hellaswag_file", str(data), "--output_dir", str(out)]
    run_trainer(*flags, "--compile", "1", "--num_iterations", "4", "--hellaswag_every", "2")
    records = [r for r in read_metrics(out) if "hellaswag_acc_norm" in r]
    assert [r["step"] for r in records] == [0, 2, 4] and all(r["hellaswag_examples"] == 5 for r in records)
    run_trainer(*flags, "--eval_only", "1", "--resume_from", "latest")
    assert json.loads((out / "eval.jsonl").read_text())["hellaswag_examples"] == 5


def test_a_step_slow_to_launch_is_timed_as_slow(tmp_path, monkeypatch):
    """A step whose launch holds the host up is that slow, and the step after it is not made short:
    with the host's clock, the GPU had run most of the slow step by the time the host waited for it,
    and that step came out short (3-step runs printed "steady state" speeds of twice the real one)."""
    import train_gpt2_mod as m

    launches, real_step = [], m.train_step

    def second_launch_slow(*args, **kwargs):
        out = real_step(*args, **kwargs)
        launches.append(None)
        if len(launches) == 2:
            time.sleep(0.5)  # the host busy after queueing step 2, before its loss is copied
        return out

    monkeypatch.setattr(m, "train_step", second_launch_slow)
    m.main([*SHORT_TRAIN, "--num_iterations", "5", "--input_val_bin", "", "--output_dir", str(tmp_path)])
    step_ms = {r["step"]: r["step_ms"] for r in read_metrics(tmp_path) if "step_ms" in r}
    assert step_ms[2] > 450, step_ms
    assert max(step_ms[s] for s in (3, 4, 5)) < 250, step_ms


def test_interleaved_bench_times_two_compiled_models_in_one_process(tmp_path):
    """tools/bench_interleaved.py on CUDA: two configs compiled and replayed as CUDA graphs in one
    process, each block's median step on the GPU's clock, and the paired summary."""
    out = tmp_path / "blocks.json"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_interleaved.py"), "d12", "d12_flash_mla", "--rounds", "2", "--steps", "3", "--warmup", "3", "--json", str(out),
                           "--", *TINY, "--compile", "1", "--cuda_graphs", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads(out.read_text())
    assert [r["model"] for r in records] == ["d12", "d12_flash_mla", "d12_flash_mla", "d12"]
    assert all(r["summary"]["median_step_ms"] > 0 for r in records)
    assert "2 rounds |" in proc.stdout


def test_profile_reports_the_host_and_the_gaps():
    """tools/profile_train.py end to end on a tiny model: the step's time, the host's launch and
    wait, its launch calls under the profiler, and the GPU's gaps."""
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "profile_train.py"), "--warmup", "2", "--timed", "4", "--steps", "2", "--", *TINY], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for start in ("host, per step (median, range):", "host, per step under the profiler:", "GPU idle under the profiler, per step:"):
        assert any(line.startswith(start) for line in proc.stdout.splitlines()), proc.stdout[-3000:]
