"""The attention-kernel layer: one choice per layer, logged as it runs; a new kernel is one class and
one table entry; checkpoints do not depend on the kernel."""

import dataclasses
import re

import pytest
import torch

import train_gpt2_mod as m
from conftest import SHORT_TRAIN, losses, read_metrics, run_trainer

# every named config, shrunk so that each keeps its layout (windowed and global layers, MLA dims)
SHRINK = dict(n_layer=4, n_head=4, n_embd=64, block_size=64, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)


def shrunk(name):
    config = m.MODEL_CONFIGS[name]
    return dataclasses.replace(config, **SHRINK, sliding_window=8 if config.sliding_window else 0)


def kernels_called(model, device, dtype, autocast):
    """{layer index: name of the kernel class whose code ran}, from one forward pass."""
    layer_of = {id(block.attn.kernel): i for i, block in enumerate(model.transformer.h)}
    called = {}
    patched = {cls: cls.__dict__["__call__"] for cls in (m.SDPA, m.WindowKernel, m.FlashAttention2, m.FlashAttention3)}

    def spy(original):
        def call(self, q, k, v):
            called[layer_of[id(self)]] = type(self).name
            return original(self, q, k, v)

        return call

    try:
        for cls, original in patched.items():
            cls.__call__ = spy(original)
        idx = torch.randint(0, 50257, (2, 32), device=device)
        with autocast, torch.no_grad():
            model(idx, idx)
    finally:
        for cls, original in patched.items():
            cls.__call__ = original
    return called


def kernels_logged(model):
    """{layer index: kernel name} as describe_attention logs it."""
    logged = {}
    for part in m.describe_attention(model).removeprefix("attention: ").split("; "):
        name, layers = re.fullmatch(r".* on (.+) in layers ([\d,]+)", part).groups()
        logged.update({int(i): name for i in layers.split(",")})
    return logged


def check_logged_kernels_run(device, dtype, autocast):
    for name in m.MODEL_CONFIGS:
        if not name.startswith("d12"):
            continue  # d24-d48 share d12's layout
        for backend in m.KERNEL_CHOICES:
            model = m.GPT(shrunk(name)).to(device)
            try:
                model.set_kernels(backend, device, dtype)
            except m.UsageError as e:
                assert backend == "flash_attn" and "--attn_backend flash_attn, but" in str(e)
                continue
            assert kernels_called(model, device, dtype, autocast) == kernels_logged(model), (name, backend)
            for block in model.transformer.h:  # a layer is labelled Flash exactly when FlashAttention runs
                assert type(block.attn).__name__.startswith("Flash") == block.attn.kernel.flash_attention


def test_the_logged_kernel_is_the_one_called_on_cpu():
    check_logged_kernels_run("cpu", torch.float32, m.nullcontext())


@pytest.mark.gpu
def test_the_logged_kernel_is_the_one_called_on_gpu():
    check_logged_kernels_run("cuda", torch.bfloat16, torch.autocast("cuda", dtype=torch.bfloat16))


def test_a_new_kernel_is_one_class_and_one_entry(tmp_path, monkeypatch, capsys):
    calls = []

    class Dummy(m.AttentionKernel):
        name = "dummy"

        def __call__(self, q, k, v):
            calls.append(q.shape)
            return m.sdpa(q, k, v)

    monkeypatch.setitem(m.KERNEL_CHOICES, "dummy", {"causal": (Dummy,), "window": (m.MaskedSDPA,)})
    m.main([*SHORT_TRAIN, "--attn_backend", "dummy", "--num_iterations", "2", "--output_dir", str(tmp_path)])
    assert "attention: CausalSelfAttention on dummy in layers 0,1" in capsys.readouterr().out
    assert calls and len(losses(read_metrics(tmp_path))) == 2


def test_checkpoints_do_not_depend_on_the_kernel(tmp_path):
    """A checkpoint of 1.4.x (attn_backend in its config) resumes, evaluates and samples under any backend."""
    flags = [*SHORT_TRAIN, "--sliding_window", "16", "--num_iterations", "2", "--output_dir", str(tmp_path)]
    m.main(flags)
    path = tmp_path / "ckpt_000002.pt"
    checkpoint = m.load_checkpoint(path)
    checkpoint["config"]["attn_backend"] = "auto"
    torch.save(checkpoint, tmp_path / "old.pt")  # not over the file the checkpoint is mapped from
    (tmp_path / "old.pt").replace(path)
    resumed = run_trainer(*flags[:-4], "--num_iterations", "3", "--attn_backend", "sdpa", "--output_dir", str(tmp_path), "--resume_from", "latest")
    assert "resumed from" in resumed.stdout and "on SDPA + mask" in resumed.stdout
    evaluated = run_trainer("--eval_only", "1", "--resume_from", "latest", "--attn_backend", "auto", "--output_dir", str(tmp_path))
    assert "val loss" in evaluated.stdout
    sampled = run_trainer("--sample_from", str(path), "--attn_backend", "sdpa", "--sample_length", "4", "--prompt", "ROMEO:")
    assert sampled.stdout.startswith("ROMEO:")


def test_a_new_mlp_or_loss_kernel_is_one_class_and_one_entry(tmp_path, monkeypatch, capsys):
    calls = []

    class DummyMLP(m.TorchMLP):
        name = "dummy MLP"

        def __call__(self, mlp, x):
            calls.append("mlp")
            return super().__call__(mlp, x)

    class DummyLoss(m.ChunkedCrossEntropy):
        name = "dummy loss"

        def __call__(self, x, weight, targets):
            calls.append("loss")
            return super().__call__(x, weight, targets)

    monkeypatch.setitem(m.FUSED_CHOICES, "dummy", {"mlp": (DummyMLP,), "loss": (DummyLoss,)})
    m.main([*SHORT_TRAIN, "--kernels", "dummy", "--num_iterations", "2", "--output_dir", str(tmp_path)])
    assert "MLP on dummy MLP; loss on dummy loss" in capsys.readouterr().out
    assert "mlp" in calls and "loss" in calls and len(losses(read_metrics(tmp_path))) == 2


def test_without_hopper_kernels_auto_is_the_pytorch_path():
    """On the CPU (and wherever flash-attn 4 and quack cannot run) --kernels auto runs PyTorch's ops,
    and says so; --kernels pytorch does the same by choice."""
    for kernels in ("auto", "pytorch"):
        model = m.GPT(shrunk("d12")).set_kernels("auto", "cpu", torch.float32, kernels)
        assert m.describe_kernels(model).endswith("MLP on PyTorch; loss on chunked PyTorch")
    needs = m.KernelNeeds(0, 64, 64, "cpu", (), torch.float32)
    assert m.FlashAttention4.unavailable(needs) is not None
    assert m.quack_unavailable("cpu", (), torch.float32) is not None
    assert m.quack_unavailable("cuda", (8, 0), torch.bfloat16) is not None
