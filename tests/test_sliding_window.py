"""Sliding-window attention: each token sees itself and the W - 1 tokens before it."""

import pytest
import torch

from conftest import SHORT_TRAIN, losses, read_metrics
from train_gpt2_mod import (
    GPT,
    MODEL_CONFIGS,
    CausalSelfAttention,
    GPTConfig,
    MaskedSDPA,
    UsageError,
    main,
)

TINY = dict(n_layer=2, n_head=4, n_embd=64, block_size=64)


def pair(window, **changes):
    """A sliding-window attention and a causal one with the same weights."""
    torch.manual_seed(0)
    local = CausalSelfAttention(GPTConfig(**(TINY | changes)), window)
    full = CausalSelfAttention(GPTConfig(**(TINY | changes)))
    full.load_state_dict(local.state_dict())
    return local, full


@pytest.mark.parametrize("qk_norm", [False, True])
def test_output_sees_exactly_the_window(qk_norm):
    W, T, t = 8, 32, 20
    local, _ = pair(W, qk_norm=qk_norm)
    x = torch.randn(1, T, 64)
    with torch.no_grad():
        out = local(x)
        outside, inside = x.clone(), x.clone()
        outside[0, : t - W + 1] += torch.randn(t - W + 1, 64)  # every token before the window
        inside[0, t - W + 1] += torch.randn(64)  # the oldest token in the window
        assert torch.allclose(local(outside)[0, t], out[0, t], atol=1e-6)
        assert not torch.allclose(local(inside)[0, t], out[0, t], atol=1e-3)


@pytest.mark.parametrize("window", [32, 33, 1000])
def test_window_covering_the_sequence_is_causal_attention(window):
    local, full = pair(window)
    x = torch.randn(2, 32, 64)
    with torch.no_grad():
        assert torch.allclose(local(x), full(x), atol=1e-6)


def test_window_of_one_attends_to_itself_only():
    q, k, v = (torch.randn(2, 10, 3, 16) for _ in range(3))
    assert torch.allclose(MaskedSDPA(1)(q, k, v), v, atol=1e-6)


def test_window_smaller_than_sequence_differs_from_causal():
    local, full = pair(8)
    x = torch.randn(2, 32, 64)
    with torch.no_grad():
        assert torch.allclose(local(x)[:, :8], full(x)[:, :8], atol=1e-6)  # the first W tokens see everything
        assert not torch.allclose(local(x)[:, 8:], full(x)[:, 8:], atol=1e-3)


def test_d12_sliding_window_layers():
    config = MODEL_CONFIGS["d12_sliding_window"]
    assert config.sliding_window == 256 and config.global_attn_every == 4
    with torch.device("meta"):
        model = GPT(config)
    windows = [block.attn.window for block in model.transformer.h]
    assert windows == [256, 256, 256, 0] * 3
    with torch.device("meta"):
        base = GPT(MODEL_CONFIGS["d12"])
    assert model.state_dict().keys() == base.state_dict().keys()  # checkpoints load into either
    # 9 local layers score 256 keys per token instead of 1024
    assert base.flops_per_token(1024) - model.flops_per_token(1024) == 9 * 12 * 768 * (1024 - 256)


def test_every_layer_local_without_global_attn_every():
    with torch.device("meta"):
        model = GPT(GPTConfig(**(TINY | dict(sliding_window=16))))
    assert all(b.attn.window == 16 for b in model.transformer.h)


def test_bad_window_config():
    with pytest.raises(UsageError, match="needs sliding_window"):
        GPTConfig(global_attn_every=2).validate()
    with pytest.raises(UsageError, match="must not be negative"):
        GPTConfig(sliding_window=-1).validate()


@pytest.mark.parametrize("extra", [[], ["--post_norm", "1", "--qk_norm", "1"]])
def test_sliding_window_learns_on_bundled_data(tmp_path, extra):
    main([*SHORT_TRAIN, "--model", "d12_sliding_window", "--sliding_window", "16", "--global_attn_every", "2", *extra, "--num_iterations", "30", "--val_loss_every", "30", "--output_dir", str(tmp_path)])
    records = read_metrics(tmp_path)
    train, val = losses(records), losses(records, "val_loss")
    assert sum(train[s] for s in range(26, 31)) / 5 < train[1] - 2.0
    assert val[30] < val[0] - 2.0
