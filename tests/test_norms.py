"""post_norm (Peri-LN sandwich) and qk_norm (per-head RMSNorm of q and k before RoPE)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from conftest import SHORT_TRAIN, losses, read_metrics
from train_gpt2_mod import GPT, MODEL_CONFIGS, Block, CausalSelfAttention, GPTConfig, main, make_optimizer

TINY = dict(n_layer=2, n_head=4, n_embd=64, block_size=64)


def model(seed=0, **changes):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**(TINY | changes))).eval()


def test_named_configs():
    assert MODEL_CONFIGS["d12_post_norm"] == dataclasses.replace(MODEL_CONFIGS["d12"], post_norm=True)
    assert MODEL_CONFIGS["d12_post_norm_qk_norm"] == dataclasses.replace(MODEL_CONFIGS["d12"], post_norm=True, qk_norm=True)
    assert not MODEL_CONFIGS["d12"].post_norm and not MODEL_CONFIGS["d12"].qk_norm


def test_flags_off_is_the_baseline():
    base, off = model(), model(post_norm=False, qk_norm=False)
    assert base.state_dict().keys() == off.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), off.state_dict().values()))
    idx = torch.randint(0, 50257, (2, 32))
    with torch.no_grad():
        assert torch.equal(base(idx, idx)[0], off(idx, idx)[0])


@pytest.mark.parametrize("norm_type", ["layernorm", "rmsnorm"])
def test_post_norm_parameters(norm_type):
    base, post = model(norm_type=norm_type), model(post_norm=True, norm_type=norm_type)
    extra = set(post.state_dict()) - set(base.state_dict())
    per_norm = 2 if norm_type == "layernorm" else 1  # gain (+ bias)
    assert len(extra) == 2 * TINY["n_layer"] * per_norm
    block = post.transformer.h[0]
    assert type(block.attn_post_norm) is type(block.ln_1) and block.attn_post_norm.norm_type == norm_type
    assert torch.equal(block.mlp_post_norm.weight, torch.ones(64))  # gain starts at 1
    # the shared weights are the baseline's: the post-norms draw nothing from the RNG
    assert all(torch.equal(base.state_dict()[k], post.state_dict()[k]) for k in base.state_dict())
    decay, no_decay = make_optimizer(post, 1e-3, 0.1, "cpu").param_groups
    assert {id(p) for p in (block.attn_post_norm.weight, block.mlp_post_norm.weight)} <= {id(p) for p in no_decay["params"]}
    assert block.attn.c_proj.weight.abs().min() > 0  # the projection a post-norm follows is not zero


def scaled_block_output(block, x, sublayer, scale):
    """The block's output (the stream it returns plus its MLP's output, which the next block adds)
    with one sublayer's output multiplied by scale."""
    linear = getattr(block, sublayer).c_proj
    with torch.no_grad():
        linear.weight *= scale
        linear.bias *= scale
        try:
            return sum(block(x))
        finally:
            linear.weight /= scale
            linear.bias /= scale


@pytest.mark.parametrize("sublayer", ["attn", "mlp"])
def test_post_norm_makes_block_ignore_sublayer_scale(sublayer):
    torch.manual_seed(0)
    x = torch.randn(2, 16, 64)
    post = Block(GPTConfig(**(TINY | dict(post_norm=True))), 0).eval()
    pre = Block(GPTConfig(**TINY), 0).eval()
    # both scales lift the sublayer's output variance far above the norm's eps (at GPT-2 init it is
    # about 6e-3, where eps = 1e-5 alone moves the output by 2e-4)
    with torch.no_grad():
        assert torch.allclose(scaled_block_output(post, x, sublayer, 10.0), scaled_block_output(post, x, sublayer, 70.0), atol=1e-5)
        assert not torch.allclose(scaled_block_output(pre, x, sublayer, 10.0), scaled_block_output(pre, x, sublayer, 70.0), atol=1e-2)


def attention_with_scaled_qk(attn, x, scale):
    """Output of attn when its query and key projections are multiplied by scale."""
    C = x.size(-1)
    with torch.no_grad():
        attn.c_attn.weight[: 2 * C] *= scale
        attn.c_attn.bias[: 2 * C] *= scale
        try:
            return attn(x)
        finally:
            attn.c_attn.weight[: 2 * C] /= scale
            attn.c_attn.bias[: 2 * C] /= scale


def test_qk_norm_makes_attention_ignore_qk_scale():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 64)
    normed = CausalSelfAttention(GPTConfig(**(TINY | dict(qk_norm=True))))
    plain = CausalSelfAttention(GPTConfig(**TINY))
    with torch.no_grad():
        assert torch.allclose(normed(x), attention_with_scaled_qk(normed, x, 9.0), atol=1e-5)
        assert not torch.allclose(plain(x), attention_with_scaled_qk(plain, x, 9.0), atol=1e-2)


def test_qk_norm_runs_before_rope():
    torch.manual_seed(0)
    attn = CausalSelfAttention(GPTConfig(**(TINY | dict(qk_norm=True))))
    with torch.no_grad():  # non-uniform gains: norm-then-rotate and rotate-then-norm now differ
        attn.qk_norm.q_norm.weight.uniform_(0.2, 3.0)
        attn.qk_norm.k_norm.weight.uniform_(0.2, 3.0)
    x = torch.randn(2, 16, 64)
    B, T, C, H, D = 2, 16, 64, attn.n_head, attn.head_dim

    def reference(norm_first):
        q, k, v = attn.c_attn(x).view(B, T, 3, H, D).unbind(dim=2)
        rms = lambda t, w: F.rms_norm(t, (D,), w, eps=1e-6)
        gq, gk = attn.qk_norm.q_norm.weight, attn.qk_norm.k_norm.weight
        if norm_first:
            q, k = attn.rotary(rms(q, gq)), attn.rotary(rms(k, gk))
        else:
            q, k = rms(attn.rotary(q), gq), rms(attn.rotary(k), gk)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return attn.c_proj(y.transpose(1, 2).reshape(B, T, C))

    with torch.no_grad():
        out = attn(x)
        assert torch.allclose(out, reference(norm_first=True), atol=1e-5)
        assert not torch.allclose(out, reference(norm_first=False), atol=1e-3)


def test_qk_norm_alone_from_the_command_line(tmp_path):
    main([*SHORT_TRAIN, "--qk_norm", "1", "--num_iterations", "2", "--output_dir", str(tmp_path)])
    import json

    config = json.loads((tmp_path / "run.json").read_text())["config"]
    assert config["qk_norm"] is True and config["post_norm"] is False


@pytest.mark.parametrize("name", ["d12_post_norm", "d12_post_norm_qk_norm"])
def test_norm_configs_learn_on_bundled_data(tmp_path, name):
    main([*SHORT_TRAIN, "--model", name, "--num_iterations", "30", "--val_loss_every", "30", "--output_dir", str(tmp_path)])
    records = read_metrics(tmp_path)
    train, val = losses(records), losses(records, "val_loss")
    assert sum(train[s] for s in range(26, 31)) / 5 < train[1] - 2.0
    assert val[30] < val[0] - 2.0
