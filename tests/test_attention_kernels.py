"""The attention-kernel layer: one choice per layer, logged as it runs; a new kernel is one class and
one table entry; checkpoints do not depend on the kernel."""

import dataclasses
import functools
import re

import pytest
import torch

import train_gpt2_mod as m
from conftest import SHORT_TRAIN, losses, only_the_loss_breaks_the_graph, read_metrics, run_trainer
from torch._dynamo.utils import counters

# every named config, shrunk so that each keeps its layout (windowed and global layers, MLA dims)
SHRINK = dict(n_layer=4, n_head=4, n_embd=64, block_size=64, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)


def shrunk(name):
    config = m.MODEL_CONFIGS[name]
    return dataclasses.replace(config, **SHRINK, sliding_window=8 if config.sliding_window else 0)


def kernel_classes():
    """Every class in KERNEL_CHOICES and every kernel class it takes code from."""
    listed = {kernel for choices in m.KERNEL_CHOICES.values() for kernels in choices.values() for kernel in kernels}
    return {cls for kernel in listed for cls in kernel.__mro__ if issubclass(cls, m.AttentionKernel)}


def kernels_called(model, device, dtype, autocast):
    """{layer index: name of the kernel class whose code ran}, from one forward pass."""
    layer_of = {id(block.attn.kernel): i for i, block in enumerate(model.transformer.h)}
    called = {}
    # a kernel's entries: __call__ on q, k, v; packed on the qkv projection (multi-head attention)
    patched = {(cls, entry): cls.__dict__[entry] for cls in kernel_classes() for entry in ("__call__", "packed") if entry in cls.__dict__}

    def spy(original):
        def call(self, *args):
            called[layer_of[id(self)]] = type(self).name
            return original(self, *args)

        return call

    try:
        for (cls, entry), original in patched.items():
            setattr(cls, entry, spy(original))
        idx = torch.randint(0, 50257, (2, 32), device=device)
        with autocast, torch.no_grad():
            model(idx, idx)
    finally:
        for (cls, entry), original in patched.items():
            setattr(cls, entry, original)
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


def test_a_new_fused_kernel_is_one_class_and_one_entry(tmp_path, monkeypatch, capsys):
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

    class DummyQKV(m.TorchQKV):
        name = "dummy projection"

        def __call__(self, attn, x):
            calls.append("qkv")
            return super().__call__(attn, x)

    class DummyNorm(m.TorchAddNorm):
        name = "dummy norm"

        def __call__(self, norm, x, branch):
            calls.append("norm")
            return super().__call__(norm, x, branch)

    monkeypatch.setitem(m.FUSED_CHOICES, "dummy", {"mlp": (DummyMLP,), "loss": (DummyLoss,), "qkv": (DummyQKV,), "norm": (DummyNorm,)})
    m.main([*SHORT_TRAIN, "--kernels", "dummy", "--num_iterations", "2", "--output_dir", str(tmp_path)])
    assert "q, k, v projection on dummy projection; add and norm on dummy norm; MLP on dummy MLP; loss on dummy loss" in capsys.readouterr().out
    assert {"mlp", "loss", "qkv", "norm"} <= set(calls) and len(losses(read_metrics(tmp_path))) == 2


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


# FlashAttention-4's two entries and quack's in-place RoPE as PyTorch math, so that the trainer's own
# code around them (custom ops, their fakes and autograd, the packed path) runs on a CPU


def reference_scores(q, k, softmax_scale, window_size_left):
    """Masked scaled scores (B, H, Tq, Tk) in fp32, FA4's window convention (left: keys before)."""
    pos = torch.arange(q.size(1))
    window = 0 if window_size_left is None else window_size_left + 1
    scores = torch.einsum("bthd,bshd->bhts", q.float(), k.float()) * softmax_scale
    return scores.masked_fill(~m.window_mask(pos, pos, window), float("-inf"))


def reference_fa4_forward(q, k, v, softmax_scale, causal, window_size_left, window_size_right, return_lse):
    scores = reference_scores(q, k, softmax_scale, window_size_left)
    lse = scores.logsumexp(dim=-1)
    out = torch.einsum("bhts,bshd->bthd", (scores - lse[..., None]).exp(), v.float())
    return out.to(q.dtype).contiguous(), lse  # contiguous, as FA4's output and the custom op's fake


def reference_fa4_backward(q, k, v, out, dout, lse, softmax_scale, causal, window_size_left, window_size_right, dq=None, dk=None, dv=None, calls=None):
    calls.append("into the given tensors" if dq is not None else "new tensors")
    p = (reference_scores(q, k, softmax_scale, window_size_left) - lse[..., None]).exp()
    dout, q, k, v = dout.float(), q.float(), k.float(), v.float()
    dp = torch.einsum("bthd,bshd->bhts", dout, v)
    ds = p * (dp - (dout * out.float()).sum(-1).transpose(1, 2)[..., None])
    grads = (torch.einsum("bhts,bshd->bthd", ds, k) * softmax_scale, torch.einsum("bhts,bthd->bshd", ds, q) * softmax_scale, torch.einsum("bhts,bthd->bshd", p, dout))
    return tuple(grad.to(like.dtype) if into is None else into.copy_(grad) for grad, into, like in zip(grads, (dq, dk, dv), (q, k, v)))


def rotate_halves(x, cos, sin):
    """RoPE on (B, T, ..., D) by (T, D/2) tables."""
    cos, sin = (t[None, :, None, None, :] for t in (cos, sin))
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class ReferenceRotaryInPlace(torch.autograd.Function):
    """quack's apply_rotary_emb_qkv_ on a (B, T, 3, H, D) projection: q and k rotated in place, and
    their gradient rotated back in backward."""

    @staticmethod
    def forward(ctx, qkv, cos, sin):
        ctx.save_for_backward(cos, sin)
        qkv[:, :, :2] = rotate_halves(qkv[:, :, :2], cos, sin)
        ctx.mark_dirty(qkv)
        return qkv

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        grad = grad.clone()
        grad[:, :, :2] = rotate_halves(grad[:, :, :2], cos, -sin)
        return grad, None, None


@pytest.fixture
def reference_fast_kernels(monkeypatch):
    """FA4 and quack's RoPE stood in by the references; returns how FA4's backward wrote its grads."""
    calls = []
    fa4 = type("ReferenceFA4", (), {"_flash_attn_fwd": staticmethod(reference_fa4_forward), "_flash_attn_bwd": staticmethod(functools.partial(reference_fa4_backward, calls=calls))})
    monkeypatch.setattr(m, "flash_attn4", fa4)
    monkeypatch.setattr(m, "quack_rotary_qkv_", ReferenceRotaryInPlace.apply)
    return calls


@pytest.mark.parametrize("window", [0, 8])
def test_the_packed_path_equals_the_split_path(window, reference_fast_kernels):
    """FlashAttention4.packed (RoPE in place in the projection, FA4's gradient written into it) gives
    the output and gradients of SDPA on q, k, v split and rotated apart."""
    config = dataclasses.replace(m.MODEL_CONFIGS["d12"], n_head=2, n_embd=64, block_size=32)
    torch.manual_seed(0)
    attn = m.CausalSelfAttention(config, window)
    torch.nn.init.normal_(attn.c_attn.bias, std=0.02)
    x, grad = torch.randn(2, 32, 64), torch.randn(2, 32, 64)
    results = []
    for kernel in (m.FlashAttention4(window), m.portable_kernel(window, 32, 32)):
        attn.kernel = kernel
        xi = x.clone().requires_grad_()
        out = attn(xi)
        out.backward(grad)
        results.append([out, xi.grad, attn.c_attn.weight.grad, attn.c_attn.bias.grad])
        attn.zero_grad(set_to_none=True)
    assert reference_fast_kernels == ["into the given tensors"]  # the packed backward ran, once
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "qk_dim, v_dim, window, capability, tile",
    [
        (96, 64, 0, (9, 0), (128, 128)),  # MLA's head dims on Hopper: the table's tile
        (96, 64, 8, (9, 0), None),  # a window: FA4's own
        (64, 64, 0, (9, 0), None),  # d12's head dims: FA4's own
        (96, 64, 0, (10, 0), None),  # Blackwell: FA4's own (the table is for sm90)
    ],
)
def test_flash_attn4_gets_the_tables_forward_tile_only_where_it_was_measured(monkeypatch, qk_dim, v_dim, window, capability, tile):
    """flash_attn4_attend hands FA4 FLASH_ATTN4_SM90_FORWARD_TILES' tile for full causal attention
    at the table's head dims on sm90, and leaves FA4 to choose everywhere else."""
    given = []

    def recording_forward(q, k, v, **kwargs):
        given.append(kwargs.get("tile_mn"))
        return reference_fa4_forward(q, k, v, **{key: kwargs[key] for key in ("softmax_scale", "causal", "window_size_left", "window_size_right", "return_lse")})

    monkeypatch.setattr(m, "flash_attn4", type("RecordingFA4", (), {"_flash_attn_fwd": staticmethod(recording_forward)}))
    monkeypatch.setattr(m, "device_capability", lambda device: capability)
    q, k = torch.randn(2, 1, 8, 2, qk_dim).unbind(0)
    m.flash_attn4_attend(q, k, torch.randn(1, 8, 2, v_dim), window)
    assert given == [tile]


def test_flash_attn4_custom_ops_trace_with_their_fakes(reference_fast_kernels):
    """Both custom-op pairs in one graph under torch.compile (their fakes give the shapes, their
    autograd the gradients), equal to the ops run eagerly and to SDPA."""
    torch.manual_seed(0)
    qkv = torch.randn(2, 32, 3, 2, 16, requires_grad=True)
    grad = torch.randn(2, 32, 2, 16)

    def packed_and_split(qkv):
        packed = torch.ops.train_gpt2_mod.flash_attn4_packed_forward(qkv, 0)[0]
        return packed + torch.ops.train_gpt2_mod.flash_attn4_forward(*qkv.unbind(dim=2), 8)[0]

    want = m.sdpa(*qkv.unbind(dim=2)) + m.MaskedSDPA(8)(*qkv.unbind(dim=2))
    for run in (packed_and_split, torch.compile(packed_and_split, backend="aot_eager", fullgraph=True)):
        out = run(qkv)
        (got_grad,) = torch.autograd.grad(out, qkv, grad)
        (want_grad,) = torch.autograd.grad(want, qkv, grad, retain_graph=True)
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-5)


def reference_rope_turns(inv_freq, rotary_n, nonrotary_n=0):
    """quack's make_interleaved_inv_freq: each frequency in turns as float-float (hi, lo), one head's
    table repeated over rotary_n columns, then nonrotary_n zeros (imports inside, as quack's)."""
    import math

    turns = inv_freq.double() / (2 * math.pi)
    hi = turns.float()
    head = torch.stack((hi, (turns - hi.double()).float()), dim=-1).flatten()
    return torch.cat((head.repeat(rotary_n // head.numel()), head.new_zeros(nonrotary_n)))


def rotate_adjacent(x, cos, sin):
    """RoPE on pairs of adjacent columns (2j, 2j + 1) of x (..., 2n) by cos and sin (..., n)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def reference_gemm_rope(x, weight_t, pos, freq, bias=None):
    """quack's rope_posfreq epilogue GEMM, in fp32; its vectors (1, length)."""
    assert pos.dim() == freq.dim() == 2 and (bias is None or bias.dim() == 2)
    acc = x.float() @ weight_t.float() + (0 if bias is None else bias.float())
    angle = 2 * torch.pi * pos[0, :, None] * (freq[0, 0::2] + freq[0, 1::2])
    return {"D": rotate_adjacent(acc, angle.cos(), angle.sin()).to(x.dtype)}


def reference_rotary(x, cos, sin, interleaved=False, inplace=False, conjugate=False):
    """quack's apply_rotary on (B, T, H, D) by (T, D/2) tables, here in place only: on pairs of
    adjacent dims (interleaved) or RoPE's (j, j + D/2)."""
    assert inplace
    sin = -sin if conjugate else sin
    x.copy_(rotate_adjacent(x, cos[:, None], sin[:, None]) if interleaved else rotate_halves(x[:, :, None], cos, sin)[:, :, 0])


def assert_projections_agree(attn, compiled):
    """The attention layer's output and its input's and parameters' gradients under QuackQKV equal
    those under TorchQKV, eagerly or compiled (aot_eager, one graph)."""
    x, grad = torch.randn(2, 32, 64), torch.randn(2, 32, 64)
    results = []
    for kernel in (m.QuackQKV(), m.TorchQKV()):
        torch._dynamo.reset()
        attn.qkv_kernel = kernel
        xi = x.clone().requires_grad_()
        out = (torch.compile(attn, backend="aot_eager", fullgraph=True) if compiled else attn)(xi)
        out.backward(grad)
        results.append([out, xi.grad] + [p.grad for p in attn.parameters()])
        attn.zero_grad(set_to_none=True)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("compiled", [False, True])
def test_rope_in_the_projection_equals_rope_after_it(bias, compiled, reference_quack_projections):
    """QuackQKV (quack's GEMM with RoPE in its epilogue, on rows reordered so that RoPE's pairs are
    adjacent; the gradient rotated back by quack) gives the attention's output and gradients of the
    PyTorch projection followed by RoPE. quack's kernels are stood in by references."""
    config = dataclasses.replace(m.MODEL_CONFIGS["d12"], n_head=2, n_embd=64, block_size=32, bias=bias)
    torch.manual_seed(0)
    attn = m.CausalSelfAttention(config)
    if bias:
        torch.nn.init.normal_(attn.c_attn.bias, std=0.02)
    assert_projections_agree(attn, compiled)


def reference_gemm(a, b, *, tuned):
    """quack's gemm: a @ b."""
    return a @ b


def reference_gemm_add_inplace(a, b, out, *, tuned):
    """quack's gemm_add_inplace: a @ b added onto out."""
    out.add_(a @ b)


@pytest.fixture
def reference_quack_projections(monkeypatch):
    """quack's kernels of the q, k, v projection stood in by references: the RoPE epilogue GEMMs,
    the frequency table, the in-place rotation, and the GEMMs of MLA's x gradient."""
    monkeypatch.setattr(m, "quack_rope_turns", reference_rope_turns)
    monkeypatch.setattr(m, "quack_gemm_rope", reference_gemm_rope)
    monkeypatch.setattr(m, "quack_gemm_rope_bias", reference_gemm_rope)
    monkeypatch.setattr(m, "quack_rotary", reference_rotary)
    monkeypatch.setattr(m, "quack_gemm", reference_gemm)
    monkeypatch.setattr(m, "quack_gemm_add_inplace", reference_gemm_add_inplace)


@pytest.mark.parametrize("fa4", [False, True])
@pytest.mark.parametrize("compiled", [False, True])
def test_mlas_rope_in_the_projections_equals_rope_after_them(fa4, compiled, reference_quack_projections, reference_fast_kernels):
    """MLA's queries and latent by QuackRopeQueriesLatent (one GEMM on the two weights joined, RoPE
    in its epilogue on rows made adjacent alike, x's gradient from one GEMM accumulating onto the
    other) give the layer's output and gradients of the PyTorch projections followed by RoPE, on
    FlashAttention-4 (stood in) and on SDPA."""
    config = dataclasses.replace(m.MODEL_CONFIGS["d12_flash_mla"], n_head=2, n_embd=64, block_size=32, kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12)
    torch.manual_seed(0)
    attn = m.MultiHeadLatentAttention(config)
    attn.kernel = m.FlashAttention4(0) if fa4 else m.portable_kernel(0, attn.qk_dim, attn.v_dim)
    assert_projections_agree(attn, compiled)


def test_qk_norm_layers_project_with_pytorch(monkeypatch):
    """RoPE in the projection cannot follow QK-norm, which comes between the two; MLA's query latent
    keeps its projections PyTorch's too."""
    monkeypatch.setattr(m.QuackQKV, "unavailable", staticmethod(lambda *args: None))
    for name, changes, kernel in [("d12_post_norm_qk_norm", {}, m.TorchQKV), ("d12", {}, m.QuackQKV), ("d12_flash_mla", {}, m.QuackQKV), ("d12_flash_mla", dict(q_lora_rank=32), m.TorchQKV)]:
        model = m.GPT(dataclasses.replace(shrunk(name), **changes)).set_kernels("sdpa", "cpu", torch.float32)
        assert {type(b.attn.qkv_kernel) for b in model.transformer.h} == {kernel}, name


# quack's add-and-norm kernels as PyTorch math, with their calling convention: each writes into the
# tensors it is given; the weight's and bias's gradients come as per-block partial sums


def reference_norm_forward(x, weight, out, bias, rstd, mean, residual, residual_out, eps, is_layernorm):
    """quack's _rmsnorm_fwd as a LayerNorm of x + residual, which goes to residual_out."""
    assert is_layernorm and mean is not None and residual_out.dtype == residual.dtype
    summed = x.float() + residual.float()
    mu, var = summed.mean(-1), summed.var(-1, correction=0)
    residual_out.copy_(summed), mean.copy_(mu), rstd.copy_((var + eps).rsqrt())
    out.copy_((summed - mu[:, None]) * rstd[:, None] * weight + (0 if bias is None else bias))


def reference_norm_backward(x, weight, dout, rstd, dx, dw_partial, db_partial, dresidual_out, dresidual, sm_count, mean, is_layernorm):
    """quack's _rmsnorm_bwd for LayerNorm: the input's gradient plus dresidual_out, written to dx and
    dresidual, each in its dtype; the weight's and bias's column sums spread over sm_count rows."""
    assert is_layernorm and dw_partial.shape == db_partial.shape == (sm_count, x.size(-1))
    x_hat = (x.float() - mean[:, None]) * rstd[:, None]
    dout = dout.float()
    wdy = dout * weight
    grad = (wdy - wdy.mean(-1, keepdim=True) - x_hat * (x_hat * wdy).mean(-1, keepdim=True)) * rstd[:, None]
    grad = grad + (0 if dresidual_out is None else dresidual_out.float())
    dx.copy_(grad), dresidual.copy_(grad)
    for partial, column_sums in ((dw_partial, (dout * x_hat).sum(0)), (db_partial, dout.sum(0))):
        partial.copy_(column_sums.expand_as(partial) / sm_count)


@pytest.fixture
def reference_quack_norm(monkeypatch):
    monkeypatch.setattr(m, "quack_norm_forward", reference_norm_forward)
    monkeypatch.setattr(m, "quack_norm_backward", reference_norm_backward)
    monkeypatch.setattr(m, "quack_norm_partial_rows", lambda dim, device: 3)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("compiled", [False, True])
def test_quacks_add_and_norm_equals_pytorchs(bias, compiled, reference_quack_norm):
    """The whole model with every residual add and the LayerNorm after it in one kernel (QuackAddNorm;
    quack's kernels stood in by references) gives the loss and gradients of PyTorch's add and norm."""
    config = dataclasses.replace(shrunk("d12"), bias=bias)
    torch.manual_seed(0)
    model = m.GPT(config)
    for name, p in model.named_parameters():  # the norms away from their initial ones and zeros
        if ".ln_" in name or "ln_f" in name:
            torch.nn.init.normal_(p, mean=1.0 if name.endswith("weight") else 0.0, std=0.1)
    idx = torch.randint(0, 50257, (2, 32))
    results = []
    for kernel in (m.QuackAddNorm(), m.TorchAddNorm()):
        torch._dynamo.reset()
        model.norm_kernel = kernel
        for block in model.transformer.h:
            block.norm_kernel = kernel
        counters.clear()
        run = torch.compile(model, backend="aot_eager") if compiled else model
        _, loss = run(idx, idx, return_logits=False)
        assert only_the_loss_breaks_the_graph() or not compiled
        loss.backward()
        results.append([loss] + [p.grad for p in model.parameters()])
        model.zero_grad(set_to_none=True)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_quacks_add_and_norm_gives_the_branch_its_gradient_in_its_dtype(reference_quack_norm):
    """The fp32 stream and a bf16 sublayer output: the sum and its gradient for x stay fp32, the
    branch's gradient comes in bf16 (the cast PyTorch's path runs as a kernel of its own), the
    norm's output in autocast's dtype; the values are PyTorch's."""
    torch.manual_seed(0)
    norm = m.Norm(64, "layernorm", bias=True)
    torch.nn.init.normal_(norm.weight, mean=1.0, std=0.1), torch.nn.init.normal_(norm.bias, std=0.1)
    x, branch = torch.randn(2, 8, 64, requires_grad=True), torch.randn(2, 8, 64, dtype=torch.bfloat16, requires_grad=True)
    grad_sum, grad_out = torch.randn(2, 8, 64), torch.randn(2, 8, 64, dtype=torch.bfloat16)
    results = []
    for kernel in (m.QuackAddNorm(), m.TorchAddNorm()):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            summed, out = kernel(norm, x, branch)
        results.append([summed, out, *torch.autograd.grad((summed, out.to(torch.bfloat16)), (x, branch, norm.weight, norm.bias), (grad_sum, grad_out))])
    quack, torch_ = results
    assert [t.dtype for t in quack] == [torch.float32, torch.bfloat16, torch.float32, torch.bfloat16, torch.float32, torch.float32]
    for a, b in zip(quack, torch_):
        torch.testing.assert_close(a, b.to(a.dtype), rtol=1e-4, atol=1e-5)
