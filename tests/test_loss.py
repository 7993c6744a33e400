"""The chunked loss (return_logits=False, what training and validation use) against the loss over
the whole batch's logits: the same value and the same gradients."""

import dataclasses
import weakref

import pytest
import torch
import torch.nn.functional as F
import torch.utils._python_dispatch
from torch._dynamo.utils import counters

import train_gpt2_mod as m
from conftest import only_the_loss_breaks_the_graph


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(m, "LOSS_CHUNK_ROWS", 7)  # 30 rows: four full chunks and a short one


def batch(seed=0, ignored=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(53, 16, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 53, (30,), generator=g)
    if ignored:
        t[::4] = m.IGNORE_INDEX
    return x, w, t


@pytest.mark.parametrize("ignored", [False, True])
def test_chunked_loss_and_gradients_match_full_logits(small_chunks, ignored):
    x, w, t = batch(ignored=ignored)
    loss = m.chunked_cross_entropy(x, w, t)
    gx, gw = torch.autograd.grad(2.5 * loss, (x, w))  # backward scales by the incoming gradient
    ref = F.cross_entropy(x @ w.t(), t, ignore_index=m.IGNORE_INDEX)
    rx, rw = torch.autograd.grad(2.5 * ref, (x, w))
    # the loss goes through fp32 logits, as in training: fp32 rounding, not float64
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-7)
    if ignored:
        assert (gx[::4] == 0).all()  # ignored rows get no gradient


def test_chunked_loss_without_grad_matches(small_chunks):
    x, w, t = batch(seed=1)
    with torch.no_grad():
        assert m.chunked_cross_entropy(x, w, t).item() == pytest.approx(F.cross_entropy(x @ w.t(), t, ignore_index=m.IGNORE_INDEX).item(), rel=1e-6)


def test_chunked_loss_uses_autocast_dtype(small_chunks):
    x, w, t = batch(seed=2)
    x, w = x.float().detach().requires_grad_(), w.float().detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.chunked_cross_entropy(x, w, t)
        ref = F.cross_entropy(F.linear(x, w).float(), t, ignore_index=m.IGNORE_INDEX)  # what lm_head under autocast computes
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    gx, gw = torch.autograd.grad(loss, (x, w))
    assert gx.dtype == gw.dtype == torch.float32
    rx, rw = torch.autograd.grad(ref, (x, w))
    torch.testing.assert_close(gx, rx, rtol=2e-2, atol=1e-4)  # bf16 matmuls in both, rounded in other places
    torch.testing.assert_close(gw, rw, rtol=2e-2, atol=1e-4)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = dataclasses.replace(m.MODEL_CONFIGS["d12"], n_layer=2, n_head=2, n_embd=32, block_size=32)
    return m.GPT(config)


@pytest.mark.parametrize("compiled", [False, True])
def test_model_gradients_do_not_depend_on_return_logits(small_chunks, compiled):
    model = tiny_model()
    torch._dynamo.reset()
    counters.clear()
    run = torch.compile(model, dynamic=False) if compiled else model
    idx = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(3))

    def grads(return_logits):
        model.zero_grad(set_to_none=True)
        logits, loss = run(idx, idx, return_logits=return_logits)
        assert (logits is None) != return_logits
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    full_loss, full_grads = grads(True)
    chunked_loss, chunked_grads = grads(False)
    assert chunked_loss.item() == pytest.approx(full_loss.item(), rel=1e-5)
    for a, b in zip(chunked_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert only_the_loss_breaks_the_graph() == compiled  # uncompiled, there is no planned break to see


class LiveTensorsOfShape(torch.utils._python_dispatch.TorchDispatchMode):
    """The most tensors of one shape alive at once among those the ops under this mode return."""

    def __init__(self, shape):
        super().__init__()
        self.shape, self.alive, self.most = torch.Size(shape), {}, 0  # id: weak reference

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.shape == self.shape:
                self.alive[id(t)] = weakref.ref(t)
        self.most = max(self.most, sum(ref() is not None for ref in self.alive.values()))
        return out


def test_chunked_loss_sums_the_weight_gradient_in_one_buffer(small_chunks):
    """Issue 13, defect 7: each chunk's weight gradient was kept until the join (8 of them, 77 MB
    each, at d12's B=32, T=1024)."""
    x, w, t = batch(seed=4)
    with LiveTensorsOfShape(w.shape) as mode:
        m.chunked_cross_entropy(x, w, t)
    assert mode.most == 1  # five chunks here; the buffer is the only weight-shaped tensor made


def test_chunked_loss_weight_gradient_in_bf16_stays_close(small_chunks):
    """The bf16 buffer rounds the running sum once per chunk: within bf16 tolerance of fp64."""
    x, w, t = batch(seed=5, ignored=False)
    xb, wb = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gw = torch.autograd.grad(m.chunked_cross_entropy(xb, wb, t), wb)[0]
    rw = torch.autograd.grad(F.cross_entropy(x @ w.t(), t), w)[0]
    torch.testing.assert_close(gw.double(), rw, rtol=2e-2, atol=2e-3)
