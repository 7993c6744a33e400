import dataclasses
import math

import pytest
import torch

from train_gpt2_mod import (
    GPT,
    MODEL_CONFIGS,
    GPTConfig,
    Rotary,
    UsageError,
    clip_gradients,
    gpu_peak_flops,
    learning_rate_at,
    make_optimizer,
)


def tiny(name="d12", **changes):
    """A named config shrunk to CPU size, keeping its other fields."""
    base = MODEL_CONFIGS[name]
    return dataclasses.replace(base, **{"n_layer": 2, "n_embd": 16 * base.n_head, "block_size": 64, **changes})


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_every_named_config_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = GPT(tiny(name, qk_norm=True) if name == "d12" else tiny(name))
    idx = torch.randint(0, 50257, (2, 32))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 32, 50304)
    assert math.isfinite(loss.item())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def gpt2_param_count(c):
    """Embedding (tied with the head) + per block: qkv/proj/fc/proj weights and biases, two norms + final norm."""
    C = c.n_embd
    return c.vocab_size * C + c.n_layer * (12 * C * C + 13 * C) + 2 * C


@pytest.mark.parametrize("name", ["d12", "d24", "d36", "d48"])
def test_named_config_sizes(name):
    config = MODEL_CONFIGS[name]
    with torch.device("meta"):
        model = GPT(config)
    assert model.num_params() == gpt2_param_count(config)
    assert config.block_size == 1024 and config.vocab_size == 50304
    expected = {"d12": (12, 12, 768), "d24": (24, 16, 1024), "d36": (36, 20, 1280), "d48": (48, 25, 1600)}[name]
    assert (config.n_layer, config.n_head, config.n_embd) == expected


def test_d12_is_gpt2_small():
    with torch.device("meta"):
        n = GPT(MODEL_CONFIGS["d12"]).num_params()
    assert n == 123_689_472  # GPT-2 124M minus the learned position table that RoPE replaces


def test_nanogpt_module_names_and_tied_head():
    model = GPT(tiny())
    names = {name for name, _ in model.named_modules()}
    assert {"transformer.wte", "transformer.h.0.attn", "transformer.h.0.mlp", "transformer.ln_f", "lm_head"} <= names
    assert "transformer.wpe" not in names  # positions come from RoPE
    assert model.lm_head.weight is model.transformer.wte.weight


def test_gpt2_init_scales_residual_projections():
    torch.manual_seed(0)
    config = dataclasses.replace(MODEL_CONFIGS["d12"], n_layer=4, n_embd=256, n_head=4)
    model = GPT(config)
    proj_std = model.transformer.h[0].attn.c_proj.weight.std().item()
    fc_std = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert abs(fc_std - 0.02) < 0.001
    assert abs(proj_std - 0.02 / math.sqrt(2 * 4)) < 0.0005
    assert model.transformer.h[0].mlp.c_fc.bias.abs().max() == 0


def test_causal_future_tokens_do_not_change_the_past():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    a = torch.randint(0, 50257, (1, 24))
    b = a.clone()
    b[0, 12:] = torch.randint(0, 50257, (12,))
    with torch.no_grad():
        la, _ = model(a, a)
        lb, _ = model(b, b)
    assert torch.allclose(la[:, :12], lb[:, :12], atol=1e-5)
    assert not torch.allclose(la[:, 12:], lb[:, 12:], atol=1e-3)


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    rot = Rotary(dim=16, max_seq_len=64, theta=10000.0)
    q = torch.randn(16).expand(1, 64, 1, 16)
    k = torch.randn(16).expand(1, 64, 1, 16)
    rq, rk = rot(q)[0, :, 0], rot(k)[0, :, 0]
    # the same vectors at positions (m, n) and (m + s, n + s) give the same score
    assert torch.allclose(rq[10] @ rk[7], rq[40] @ rk[37], atol=1e-5)
    assert torch.allclose(rq[5] @ rk[5], rq[60] @ rk[60], atol=1e-5)
    assert not torch.allclose(rq[10] @ rk[7], rq[10] @ rk[9], atol=1e-3)
    assert torch.allclose(rot(q)[0, 0], q[0, 0])  # position 0 is not rotated


def test_weight_decay_skips_norms_and_biases():
    model = GPT(tiny())
    opt = make_optimizer(model, 1e-3, 0.1, "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    no_decay_ids = {id(p) for p in no_decay["params"]}
    for name, p in model.named_parameters():
        if "ln_" in name or "norm" in name or name.endswith("bias"):
            assert id(p) in no_decay_ids, name
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


class Schedule:
    def __init__(self, **kw):
        self.__dict__.update(dict(learning_rate=1.0, learning_rate_decay_frac=0.1, warmup_iters=10, warmdown_iters=0, num_iterations=100) | kw)


def test_cosine_schedule():
    s = Schedule()
    assert learning_rate_at(0, s) == pytest.approx(0.1)
    assert learning_rate_at(9, s) == pytest.approx(1.0)
    assert 0.1 < learning_rate_at(99, s) < 0.101  # the minimum comes just after the last step
    assert learning_rate_at(100, s) == pytest.approx(0.1)
    mid = learning_rate_at(55, s)
    assert 0.5 < mid < 0.6  # halfway through the cosine: (1 + 0.1) / 2
    assert all(learning_rate_at(i, s) >= learning_rate_at(i + 1, s) for i in range(10, 99))
    # with the default decay to 0, the last trained step still learns (llm.c's schedule)
    assert learning_rate_at(99, Schedule(learning_rate_decay_frac=0.0)) > 0


def test_trapezoidal_schedule():
    s = Schedule(warmdown_iters=20, learning_rate_decay_frac=0.0)
    assert learning_rate_at(10, s) == learning_rate_at(80, s) == 1.0
    assert learning_rate_at(90, s) == pytest.approx(0.5)
    assert learning_rate_at(99, s) == pytest.approx(0.05)  # positive on the last trained step
    assert learning_rate_at(100, s) == pytest.approx(0.0)


def test_mfu_peak_by_device_name():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989.5e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak_flops("NVIDIA H200") == 989.5e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_peak_flops("Some Future GPU") is None


def test_config_validation():
    with pytest.raises(UsageError, match="multiple of n_head"):
        GPTConfig(n_embd=100, n_head=12).validate()
    with pytest.raises(UsageError, match="norm_type"):
        GPTConfig(norm_type="batchnorm").validate()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("max_norm", [0.5, 1e3, 0.0])
def test_clip_gradients_steps_as_clip_grad_norm_does(device, fused, max_norm):
    """Fused AdamW takes the clip as its grad_scale; the step is clip_grad_norm_'s, within rounding."""
    steps = []
    for clip in (clip_gradients, None):
        torch.manual_seed(0)
        model = GPT(tiny()).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=fused)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        if clip is None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
        else:
            norm = clip(model, opt, max_norm)
        opt.step()
        steps.append((norm, [p.detach().clone() for p in model.parameters()]))
    (norm, params), (want_norm, want_params) = steps
    assert torch.allclose(norm, want_norm)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(params, want_params))
