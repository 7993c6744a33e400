"""FlashAttention-4 and quack's fused kernels (requirements-hopper.txt) against the PyTorch path, on
a Hopper or newer GPU (marker `gpu`; skipped where the kernels cannot run)."""

import dataclasses
import functools

import pytest
import torch
from torch._dynamo.utils import counters

import train_gpt2_mod as m
from conftest import masked_attention_fp32, only_the_loss_breaks_the_graph

pytestmark = pytest.mark.gpu

CUDA = torch.cuda.is_available()
CAPABILITY = torch.cuda.get_device_capability() if CUDA else ()
FA4_REASON = m.FlashAttention4.unavailable(m.KernelNeeds(0, 64, 64, "cuda" if CUDA else "cpu", CAPABILITY, torch.bfloat16))
QUACK_REASON = m.quack_unavailable("cuda" if CUDA else "cpu", CAPABILITY, torch.bfloat16)
needs_fa4 = pytest.mark.skipif(FA4_REASON is not None, reason=str(FA4_REASON))
needs_quack = pytest.mark.skipif(QUACK_REASON is not None, reason=str(QUACK_REASON))


def relative_error(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def outputs_and_grads(module, attribute, kernels, x, grad, compiled):
    """Per kernel, set as module.<attribute>: the output under bf16 autocast, the output without grad
    (validation's path), x's gradient and every parameter's (each checked to be fp32), eagerly or
    compiled."""
    results = []
    for kernel in kernels:
        torch._dynamo.reset()
        setattr(module, attribute, kernel)
        run = torch.compile(module, dynamic=False) if compiled else module
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = run(xi)
            with torch.no_grad():
                out_no_grad = run(x)
        out.backward(grad)
        results.append([out, out_no_grad, xi.grad] + [p.grad for p in module.parameters()])
        assert all(p.grad.dtype == torch.float32 for p in module.parameters())
        module.zero_grad(set_to_none=True)
    return results


@needs_fa4
@pytest.mark.parametrize("qk_dim, v_dim, window", [(64, 64, 0), (96, 64, 0), (64, 64, 256), (96, 64, 256)])
def test_flash_attn4_matches_fp32_attention(qk_dim, v_dim, window):
    torch.manual_seed(0)
    q, k = (torch.randn(2, 1024, 4, qk_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    v = torch.randn(2, 1024, 4, v_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(2, 1024, 4, v_dim, device="cuda", dtype=torch.bfloat16)
    out = m.FlashAttention4(window)(q, k, v)
    got = (out, *torch.autograd.grad(out, (q, k, v), grad))
    qf, kf, vf = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = masked_attention_fp32(qf, kf, vf, window)
    want = (ref, *torch.autograd.grad(ref, (qf, kf, vf), grad.float()))
    for a, b in zip(got, want):
        assert relative_error(a, b) < 1e-2


@needs_fa4
@pytest.mark.parametrize("name", ["d12", "d12_flash_mla"])  # q, k, v packed (with quack) and apart
def test_flash_attn4_compiles_into_the_model_graph(name):
    """Its custom ops keep the compiled model in one graph: the loss is the only break."""
    torch._dynamo.reset()
    counters.clear()
    config = dataclasses.replace(m.MODEL_CONFIGS[name], n_layer=2, block_size=256)
    model = m.GPT(config).cuda().set_kernels("auto", "cuda", torch.bfloat16)
    assert {b.attn.kernel.name for b in model.transformer.h} == {"flash-attn 4"}
    idx = torch.randint(0, 50257, (4, 256), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = torch.compile(model, dynamic=False)(idx, idx, return_logits=False)
    loss.backward()
    assert torch.isfinite(loss) and only_the_loss_breaks_the_graph()


@pytest.mark.skipif(FA4_REASON is not None or QUACK_REASON is not None, reason="needs flash-attn 4 and quack")
@pytest.mark.parametrize("window", [0, 256])
def test_packed_attention_matches_the_split_path(window):
    """FlashAttention-4 on the packed qkv projection, q and k rotated in place by quack: the output
    and gradients of the split path (PyTorch's RoPE, then FA4 on q, k, v), compiled, and the same
    output without grad (validation's path)."""
    torch.manual_seed(0)
    attn = m.CausalSelfAttention(m.MODEL_CONFIGS["d12"], window).cuda()
    x = torch.randn(4, 1024, 768, device="cuda")
    grad = torch.randn(4, 1024, 768, device="cuda")
    results = []
    for split in (True, False):
        torch._dynamo.reset()
        attn.kernel = m.FlashAttention4(window)
        if split:
            attn.kernel.packed = functools.partial(m.AttentionKernel.packed, attn.kernel)
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = torch.compile(attn, dynamic=False)(xi)
        out.backward(grad)
        results.append([out, xi.grad, attn.c_attn.weight.grad, attn.c_attn.bias.grad])
        attn.zero_grad(set_to_none=True)
    for a, b in zip(*results):
        assert relative_error(a, b) < 1e-2
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert relative_error(torch.compile(attn, dynamic=False)(x), results[1][0]) < 1e-2


def assert_fast_kernel_matches_pytorchs(module, attribute, kernels, compiled, batch):
    """On (batch, 1024, 768) inputs: the module's output (with and without grad) and every gradient
    under the fast kernel of kernels, within bf16 rounding of those under PyTorch's, the other,
    eagerly or compiled."""
    x = torch.randn(batch, 1024, 768, device="cuda")
    grad = torch.randn(batch, 1024, 768, device="cuda")
    fast, pytorch = outputs_and_grads(module, attribute, kernels, x, grad, compiled)
    for a, b in zip(fast, pytorch):
        assert relative_error(a, b) < 1e-2


def assert_quack_projection_matches_pytorchs(attn, compiled):
    """The layer under QuackQKV against TorchQKV."""
    assert_fast_kernel_matches_pytorchs(attn, "qkv_kernel", (m.QuackQKV(), m.TorchQKV()), compiled, batch=4)


@pytest.mark.skipif(FA4_REASON is not None or QUACK_REASON is not None, reason="needs flash-attn 4 and quack")
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("window", [0, 256])
def test_rope_in_quacks_projection_matches_pytorchs_projection(window, compiled):
    """The q, k, v projection with RoPE in quack's epilogue (QuackQKV), then FA4: the attention's
    output and gradients of PyTorch's projection with q and k rotated by quack after it, eagerly and
    compiled, and the same output without grad (validation's path)."""
    torch.manual_seed(0)
    attn = m.CausalSelfAttention(m.MODEL_CONFIGS["d12"], window).cuda()
    torch.nn.init.normal_(attn.c_attn.bias, std=0.02)
    attn.kernel = m.FlashAttention4(window)
    assert_quack_projection_matches_pytorchs(attn, compiled)


@pytest.mark.skipif(FA4_REASON is not None or QUACK_REASON is not None, reason="needs flash-attn 4 and quack")
@pytest.mark.parametrize("compiled", [False, True])
def test_mlas_rope_in_quacks_projections_matches_pytorchs_projections(compiled):
    """MLA's queries and latent from one quack GEMM with RoPE in its epilogue and x's gradient from
    one GEMM accumulating onto the other (QuackQKV), then FA4: the layer's output and gradients of PyTorch's
    projections with RoPE after them, eagerly and compiled, and without grad."""
    torch.manual_seed(0)
    attn = m.MultiHeadLatentAttention(m.MODEL_CONFIGS["d12_flash_mla"]).cuda()
    attn.kernel = m.FlashAttention4(0)
    assert_quack_projection_matches_pytorchs(attn, compiled)


@pytest.mark.skipif(FA4_REASON is not None or QUACK_REASON is not None, reason="needs flash-attn 4 and quack")
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("changes", [dict(), dict(qk_norm=True, q_lora_rank=384)])
def test_mla_on_flash_attn4_matches_the_split_path(changes, compiled, monkeypatch):
    """MLA on FlashAttention-4, its queries' rotary dims rotated in place by quack and (without
    QK-norm) its keys and values read from, and their gradient written into, one packed tensor: the
    output and gradients of the split path (rotate_from, then FA4 on q, k, v apart), eager and
    compiled."""
    rotations, packed_grads = [], []
    quack_rotary, attend_backward = m.quack_rotary, m.flash_attn4_attend_backward
    monkeypatch.setattr(m, "quack_rotary", lambda *args, **kwargs: rotations.append(kwargs) or quack_rotary(*args, **kwargs))
    monkeypatch.setattr(m, "flash_attn4_attend_backward", lambda *args: packed_grads.append(len(args) > 7) or attend_backward(*args))
    torch.manual_seed(0)
    attn = m.MultiHeadLatentAttention(dataclasses.replace(m.MODEL_CONFIGS["d12_flash_mla"], **changes)).cuda()
    x = torch.randn(4, 1024, 768, device="cuda")
    grad = torch.randn(4, 1024, 768, device="cuda")
    results = []
    for split in (False, True):
        torch._dynamo.reset()
        attn.kernel = m.FlashAttention4(0)
        if split:
            for name in ("query_rope", "kv_packed"):
                setattr(attn.kernel, name, functools.partial(getattr(m.AttentionKernel, name), attn.kernel))
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = (torch.compile(attn, dynamic=False) if compiled else attn)(xi)
        out.backward(grad)
        results.append([out, xi.grad] + [p.grad for p in attn.parameters()])
        attn.zero_grad(set_to_none=True)
    assert rotations  # the fast pass rotated by quack
    assert packed_grads == [not changes.get("qk_norm"), False]  # and wrote dk and dv into one tensor
    for a, b in zip(*results):
        assert relative_error(a, b) < 1e-2


def loss_batch(rows=2 * m.LOSS_CHUNK_ROWS + 300, width=768, vocab=50304):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(rows, width, device="cuda", generator=g, requires_grad=True)
    w = (0.02 * torch.randn(vocab, width, device="cuda", generator=g)).requires_grad_()
    t = torch.randint(0, 50257, (rows,), device="cuda", generator=g)
    t[::5] = m.IGNORE_INDEX
    return x, w, t


def loss_and_grads(kernel, x, w, t):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = kernel(x, w, t)
    return (loss, *torch.autograd.grad(loss, (x, w)))


@needs_quack
def test_quack_loss_matches_the_chunked_loss():
    x, w, t = loss_batch()
    quack, chunked = loss_and_grads(m.QuackLinearCrossEntropy(), x, w, t), loss_and_grads(m.ChunkedCrossEntropy(), x, w, t)
    assert abs(quack[0].item() - chunked[0].item()) < 1e-3
    assert relative_error(quack[1], chunked[1]) < 1e-2 and relative_error(quack[2], chunked[2]) < 1e-2
    assert quack[2].dtype == torch.float32
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):  # validation's path
        assert abs(m.QuackLinearCrossEntropy()(x, w, t).item() - chunked[0].item()) < 1e-3


@needs_quack
@pytest.mark.parametrize("compiled", [False, True])
def test_quack_mlp_matches_the_pytorch_mlp(compiled):
    """Output and every gradient (the biases' from the fused epilogue among them), eagerly and
    compiled, and the output without grad (validation's path)."""
    torch.manual_seed(0)
    mlp = m.MLP(m.MODEL_CONFIGS["d12"]).cuda()
    torch.nn.init.normal_(mlp.c_fc.bias, std=0.02)
    torch.nn.init.normal_(mlp.c_proj.bias, std=0.02)
    assert_fast_kernel_matches_pytorchs(mlp, "kernel", (m.QuackMLP(), m.TorchMLP()), compiled, batch=8)


class AddNormBetweenLinears(torch.nn.Module):
    """A sublayer's output (bf16 under autocast) added to the fp32 stream x, normed, and read by the
    next sublayer, as a block's ln_2 sits between the attention's c_proj and the MLP's c_fc."""

    def __init__(self, dim):
        super().__init__()
        self.c_proj, self.ln, self.c_fc = torch.nn.Linear(dim, dim), m.Norm(dim, "layernorm", bias=True), torch.nn.Linear(dim, dim)

    def forward(self, x):
        summed, normed = self.norm_kernel(self.ln, x, self.c_proj(x))
        return summed + self.c_fc(normed)


@needs_quack
@pytest.mark.parametrize("compiled", [False, True])
def test_quack_add_and_norm_matches_pytorchs(compiled):
    """quack's residual add and LayerNorm in one kernel (QuackAddNorm) against PyTorch's: output and
    every gradient, eagerly and compiled, and the output without grad (validation's path)."""
    torch.manual_seed(0)
    probe = AddNormBetweenLinears(768).cuda()
    torch.nn.init.normal_(probe.ln.weight, mean=1.0, std=0.1)
    torch.nn.init.normal_(probe.ln.bias, std=0.1)
    assert_fast_kernel_matches_pytorchs(probe, "norm_kernel", (m.QuackAddNorm(), m.TorchAddNorm()), compiled, batch=8)


@pytest.mark.skipif(FA4_REASON is not None or QUACK_REASON is not None, reason="needs flash-attn 4 and quack")
@pytest.mark.parametrize("name", ["d12", "d12_post_norm_qk_norm", "d12_sliding_window", "d12_flash_mla"])
def test_fast_kernels_and_pytorch_give_the_same_model(name):
    """The whole model, compiled, under --kernels auto (FlashAttention-4 and quack here) and pytorch:
    the same loss and gradients within bf16 rounding."""
    torch.manual_seed(0)
    config = dataclasses.replace(m.MODEL_CONFIGS[name], n_layer=4, block_size=1024)
    model = m.GPT(config).cuda()
    idx = torch.randint(0, 50257, (8, 1024), device="cuda")
    results = []
    for kernels in ("auto", "pytorch"):
        torch._dynamo.reset()
        model.set_kernels("auto", "cuda", torch.bfloat16, kernels)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = torch.compile(model, dynamic=False)(idx, idx, return_logits=False)
        loss.backward()
        results.append((loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])))
        model.zero_grad(set_to_none=True)
    assert "quack" in m.describe_kernels(model.set_kernels("auto", "cuda", torch.bfloat16))
    (fast_loss, fast), (ref_loss, ref) = results
    assert abs(fast_loss - ref_loss) < 5e-3
    assert relative_error(fast, ref) < 2e-2
