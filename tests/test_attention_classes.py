"""FlashCausalSelfAttention, Multi-Head Latent Attention (MLA), FlashMLA and KV-cache generation."""

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import SHORT_TRAIN, losses, read_metrics, run_trainer
from train_gpt2_mod import (
    GPT,
    MODEL_CONFIGS,
    CausalSelfAttention,
    FlashCausalSelfAttention,
    FlashMLA,
    GPTConfig,
    MultiHeadLatentAttention,
    UsageError,
    slotted_key_values,
)

D12 = MODEL_CONFIGS["d12"]
# a small MLA with every dim distinct, so a transposed or swapped dim shows
SMALL_MLA = dict(n_layer=2, n_head=4, n_embd=64, block_size=64, kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12)


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_d12_mla_dims_and_parameters():
    config = MODEL_CONFIGS["d12_flash_mla"]
    assert (config.kv_lora_rank, config.q_lora_rank, config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim) == (256, 0, 64, 32, 64)
    mla = FlashMLA(config)
    # W_q 768 x 12*96, W_dkv 768 x (256 + 32), kv norm 256, W_ukv 256 x 12*(64 + 64), W_o 768 x 768
    assert count(mla) == 768 * 1152 + 768 * 288 + 256 + 256 * 1536 + 768 * 768 == 2_089_216
    assert count(CausalSelfAttention(D12)) == 4 * 768 * 768 + 4 * 768  # 2,359,296 weights and the biases
    with torch.device("meta"):
        d12, mla_model = GPT(D12), GPT(config)
    assert d12.num_params() - mla_model.num_params() == 12 * (2_359_296 + 3072 - 2_089_216)


def test_mla_query_latent_parameters():
    config = GPTConfig(**(SMALL_MLA | dict(use_flash_mla=True, q_lora_rank=20)))
    mla = FlashMLA(config)
    qk = 16 + 8
    assert count(mla) == 64 * 20 + 20 + 20 * 4 * qk + 64 * (24 + 8) + 24 + 24 * 4 * (16 + 12) + 4 * 12 * 64


def layer_classes(backend="auto", dtype=torch.float32, **changes):
    with torch.device("meta"):
        model = GPT(dataclasses.replace(D12, n_layer=1, **changes)).set_kernels(backend, "cpu", dtype)
    return type(model.transformer.h[0].attn)


def test_the_layer_class_names_the_kernel_that_runs(monkeypatch):
    assert layer_classes() is CausalSelfAttention
    assert layer_classes(use_flash_mla=True) is MultiHeadLatentAttention  # on SDPA: not labelled Flash
    assert layer_classes("sdpa", sliding_window=128) is CausalSelfAttention
    # where FlashAttention can run, its layers are the Flash classes
    import train_gpt2_mod as m

    monkeypatch.setattr(m.FlashAttention2, "unavailable", staticmethod(lambda needs: None))
    assert layer_classes("flash_attn") is FlashCausalSelfAttention
    assert layer_classes("flash_attn", use_flash_mla=True) is FlashMLA
    assert layer_classes("auto", use_flash_mla=True, sliding_window=128) is FlashMLA  # auto: FlashAttention for windows
    assert layer_classes("auto", use_flash_mla=True) is MultiHeadLatentAttention
    assert layer_classes("sdpa", use_flash_mla=True, sliding_window=128) is MultiHeadLatentAttention


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flash_attn_that_cannot_run_is_an_error_naming_why(dtype):
    with pytest.raises(UsageError, match="--attn_backend flash_attn, but .*(not installed|needs a CUDA GPU)"):
        layer_classes("flash_attn", dtype)


def rope(t, pos):
    """Rotary embedding of t (..., T, H, D) by the half-split convention, from scratch."""
    D = t.size(-1)
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, D, 2).float() / D)
    angles = pos[:, None].float() * inv_freq[None, :]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
    a, b = t[..., : D // 2], t[..., D // 2 :]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


def deepseek_mla(mla, h):
    """MLA's output on h (B, T, 64) by the DeepSeek-V2 equations, from mla's parameters and SMALL_MLA's
    dims: decoupled RoPE with one shared rotary key, RMSNorm with its gain on the latent, scale
    1/sqrt(nope + rope)."""
    B, T = h.shape[:2]
    H, nope, r, dv, kv = (SMALL_MLA[k] for k in ("n_head", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "kv_lora_rank"))
    pos = torch.arange(T)
    q = (h @ mla.wq.weight.T).view(B, T, H, nope + r)
    latent = h @ mla.wkv_a.weight.T
    c_kv = F.rms_norm(latent[..., :kv], (kv,), mla.kv_norm.weight, eps=1e-6)
    k_rope = rope(latent[..., kv:].view(B, T, 1, r), pos)  # one rotary key for all heads
    kv_up = (c_kv @ mla.wkv_b.weight.T).view(B, T, H, nope + dv)
    k_nope, v = kv_up[..., :nope], kv_up[..., nope:]
    q_nope, q_rope = q[..., :nope], rope(q[..., nope:], pos)
    scores = torch.einsum("bthd,bshd->bhts", q_nope, k_nope) + torch.einsum("bthd,bsd->bhts", q_rope, k_rope[:, :, 0])
    scores = scores / math.sqrt(nope + r)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v).reshape(B, T, H * dv) @ mla.c_proj.weight.T


def test_mla_matches_the_deepseek_equations():
    torch.manual_seed(0)
    mla = MultiHeadLatentAttention(GPTConfig(**(SMALL_MLA | dict(use_flash_mla=True))))
    with torch.no_grad():
        mla.kv_norm.weight.uniform_(0.5, 1.5)
        h = torch.randn(2, 10, 64)
        assert torch.allclose(mla(h), deepseek_mla(mla, h), atol=1e-5)


def test_mla_gradients_match_the_deepseek_equations():
    """Every parameter's gradient against autograd through the equations, kv_norm's gain included."""
    torch.manual_seed(0)
    mla = MultiHeadLatentAttention(GPTConfig(**(SMALL_MLA | dict(use_flash_mla=True)))).double()
    with torch.no_grad():
        mla.kv_norm.weight.uniform_(0.5, 1.5)
    h, grad = torch.randn(2, 10, 64, dtype=torch.float64), torch.randn(2, 10, 64, dtype=torch.float64)
    names, params = zip(*mla.named_parameters())
    ours = torch.autograd.grad(mla(h), params, grad)
    reference = torch.autograd.grad(deepseek_mla(mla, h), params, grad)
    for name, a, b in zip(names, ours, reference):
        # not to fp64's rounding: both rotate by fp32 tables, each computed its own way
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_slotted_key_values_are_the_joined_projection_with_exact_gradients():
    """[W_uk c_kv ; shared key ; W_uv c_kv] per head from one widened GEMM, and its gradients against
    finite differences (the identity block must send each head's slot gradient to the shared key,
    and nothing of it to c_kv or W)."""
    torch.manual_seed(0)
    H, nope, rope, dv, rank = 3, 4, 2, 5, 6
    c_kv = torch.randn(2, 7, rank, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(H * (nope + dv), rank, dtype=torch.float64, requires_grad=True)
    k_rope = torch.randn(2, 7, 1, rope, dtype=torch.float64, requires_grad=True)
    kv = (c_kv @ weight.T).view(2, 7, H, nope + dv)
    joined = torch.cat((kv[..., :nope], k_rope.expand(2, 7, H, rope), kv[..., nope:]), dim=-1)
    # the widened GEMM may sum in another order than the plain one: equal to rounding, not bitwise
    torch.testing.assert_close(slotted_key_values(c_kv, k_rope, weight, H, nope), joined, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda c, w, k: slotted_key_values(c, k, w, H, nope), (c_kv, weight, k_rope))


MLA_VARIANTS = [dict(), dict(qk_norm=True), dict(q_lora_rank=20), dict(sliding_window=6), dict(qk_norm=True, q_lora_rank=20, sliding_window=6)]


@pytest.mark.parametrize("changes", MLA_VARIANTS)
def test_absorbed_decode_equals_uncompressed_forward(changes):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**(SMALL_MLA | dict(use_flash_mla=True) | changes))).eval()
    idx = torch.randint(0, 50257, (2, 20))
    with torch.no_grad():
        full, _ = model(idx, idx)
        caches = model.new_kv_caches(2, 20, "cpu")
        prefill, _ = model(idx[:, :12], caches=caches, pos=0)  # 12 tokens at once
        steps = [model(idx[:, t : t + 1], caches=caches, pos=t)[0] for t in range(12, 20)]  # then one at a time
    assert torch.allclose(prefill[:, -1], full[:, 11], atol=1e-4)
    for t, logits in zip(range(12, 20), steps):
        assert torch.allclose(logits[:, -1], full[:, t], atol=1e-4)


def test_cache_sizes():
    def values_per_token(config):
        with torch.device("meta"):
            attn = GPT(dataclasses.replace(config, n_layer=1)).transformer.h[0].attn
        return sum(math.prod(shape) for shape in attn.cache_shapes().values())

    assert values_per_token(D12) == 2 * 12 * 64 == 1536
    assert values_per_token(MODEL_CONFIGS["d12_flash_mla"]) == 256 + 32 == 288  # 18.75% of MHA's
    assert values_per_token(dataclasses.replace(MODEL_CONFIGS["d12_flash_mla"], qk_norm=True)) == 288 + 12  # + one key RMS per head


CLASS_CONFIGS = [dict(), dict(qk_norm=True), dict(sliding_window=5, global_attn_every=2), dict(use_flash_mla=True), dict(use_flash_mla=True, qk_norm=True, post_norm=True), dict(use_flash_mla=True, sliding_window=5)]


@pytest.mark.parametrize("changes", CLASS_CONFIGS)
def test_greedy_generation_same_with_and_without_cache(changes):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**(SMALL_MLA | changes))).eval()
    idx = torch.randint(0, 50257, (2, 4))
    with_cache = model.generate(idx, 24, top_k=1, use_cache=True)
    without = model.generate(idx, 24, top_k=1, use_cache=False)
    assert with_cache.shape == (2, 28)
    assert torch.equal(with_cache, without)


def test_generate_with_cache_refuses_to_run_past_block_size():
    model = GPT(GPTConfig(**SMALL_MLA)).eval()
    with pytest.raises(ValueError, match="exceed block_size"):
        model.generate(torch.zeros(1, 60, dtype=torch.long), 10, use_cache=True)
    assert model.generate(torch.zeros(1, 60, dtype=torch.long), 10, top_k=1, use_cache=False).shape == (1, 70)


@pytest.mark.parametrize("use_flash_mla, post_norm, qk_norm", list(itertools.product([False, True], repeat=3)))
def test_every_combination_builds_and_trains(use_flash_mla, post_norm, qk_norm):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**(SMALL_MLA | dict(use_flash_mla=use_flash_mla, post_norm=post_norm, qk_norm=qk_norm))))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx = torch.randint(0, 50257, (4, 32))
    first = None
    for _ in range(6):
        _, loss = model(idx, idx)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < first - 1.0


def test_d12_flash_mla_learns_on_bundled_data(tmp_path):
    proc = run_trainer(*SHORT_TRAIN, "--model", "d12_flash_mla", "--kv_lora_rank", "32", "--qk_nope_head_dim", "16", "--qk_rope_head_dim", "16", "--v_head_dim", "32", "--num_iterations", "30", "--val_loss_every", "30", "--output_dir", str(tmp_path))
    assert "attention: MultiHeadLatentAttention on SDPA in layers 0,1" in proc.stdout  # auto, on a CPU
    records = read_metrics(tmp_path)
    train, val = losses(records), losses(records, "val_loss")
    assert sum(train[s] for s in range(26, 31)) / 5 < train[1] - 2.0
    assert val[30] < val[0] - 2.0
    sample = run_trainer("--sample_from", "latest", "--output_dir", str(tmp_path), "--prompt", "ROMEO:", "--sample_length", "12")
    assert sample.stdout.startswith("ROMEO:") and len(sample.stdout.strip()) > len("ROMEO:")


def test_bad_attention_settings(tmp_path):
    proc = run_trainer(*SHORT_TRAIN, "--attn_backend", "triton", "--output_dir", str(tmp_path), check=False)
    assert proc.returncode == 2 and "invalid choice: 'triton'" in proc.stderr
    with pytest.raises(UsageError, match="even qk_rope_head_dim"):
        GPTConfig(use_flash_mla=True, qk_rope_head_dim=7).validate()
    proc = run_trainer(*SHORT_TRAIN, "--attn_backend", "flash_attn", "--device", "cpu", "--output_dir", str(tmp_path), check=False)
    assert proc.returncode == 2 and "--attn_backend flash_attn, but" in proc.stderr
    proc = run_trainer("--sample_from", str(tmp_path / "none.pt"), check=False)
    assert proc.returncode == 2 and "no such file" in proc.stderr
