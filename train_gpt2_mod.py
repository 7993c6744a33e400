"""
GPT-2 pretraining in one file, for comparing architecture choices at GPT-2 scale.

Read top to bottom: config, layers, attention kernels, attention, model, data, optimizer and
schedule, checkpointing, training loop, command line. The attention classes hold the math; the
kernel each layer runs is chosen once, when the model is placed on its device: a new kernel is one
AttentionKernel subclass plus its entry in the table KERNEL_CHOICES (for the MLP, the loss, the
q, k, v projection and the residual add with its norm, one class plus its entry in FUSED_CHOICES).
Hopper's fast kernels (FlashAttention-4, quack) are optional: pip install -r requirements-hopper.txt.

Launch with torchrun on 1 to 8 GPUs per node (or plain python on a CPU):

    torchrun --standalone --nproc_per_node=8 train_gpt2_mod.py --model d12 \
        --input_bin "data/fineweb10B/fineweb_train_*.bin" \
        --input_val_bin "data/fineweb10B/fineweb_val_*.bin"

With no --input_bin it trains on the bundled Shakespeare shards in data/shakespeare/.
"""

import argparse
import dataclasses
import errno
import fcntl
import glob
import importlib.util
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import statistics
import sys
import time
import zipfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch._functorch.config  # activation_memory_budget, for --recompute
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

try:  # optional: FlashAttention-2 (pip install flash-attn)
    from flash_attn import flash_attn_func
except ImportError:
    flash_attn_func = None
try:  # optional: FlashAttention-3 for Hopper (flash-attn's hopper/ build)
    from flash_attn_interface import flash_attn_func as flash_attn3_func
except ImportError:
    flash_attn3_func = None
# FlashAttention-4 and quack compile their CuTe kernels on first use, and quack tunes its GEMMs; both
# can keep the results on disk, so that later runs start in seconds rather than minutes. FA4's disk
# cache and quack's record of its tuning are off unless asked for: ask, unless the user has chosen.
os.environ.setdefault("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", "1")
os.environ.setdefault("QUACK_CACHE_AUTOTUNING", "1")
try:  # optional, Hopper and newer: FlashAttention-4 (pip install -r requirements-hopper.txt)
    from flash_attn.cute import interface as flash_attn4
except ImportError:
    flash_attn4 = None
try:  # optional, Hopper and newer: quack's fused linear cross-entropy, GEMMs with epilogues and in-place RoPE
    from quack.epilogue.library import dgelu_dbias_epi as quack_gemm_dgelu_dbias
    from quack.epilogue.rotary import make_interleaved_inv_freq as quack_rope_turns
    from quack.epilogue.rotary import rope_posfreq_bias_epi as quack_gemm_rope_bias, rope_posfreq_epi as quack_gemm_rope
    from quack.gemm_interface import gemm as quack_gemm, gemm_act as quack_gemm_act, gemm_add_inplace as quack_gemm_add_inplace
    from quack.linear_cross_entropy import chunked_linear_cross_entropy as quack_linear_cross_entropy
    from quack.rmsnorm import _rmsnorm_bwd as quack_norm_backward, _rmsnorm_fwd as quack_norm_forward
    from quack.rmsnorm_config import get_sm_count as quack_norm_partial_rows
    from quack.rotary import apply_rotary as quack_rotary, apply_rotary_emb_qkv_ as quack_rotary_qkv_
except ImportError:
    quack_gemm = quack_gemm_act = quack_gemm_add_inplace = quack_gemm_dgelu_dbias = quack_linear_cross_entropy = quack_rotary = quack_rotary_qkv_ = None
    quack_rope_turns = quack_gemm_rope_bias = quack_gemm_rope = None
    quack_norm_forward = quack_norm_backward = quack_norm_partial_rows = None

REPO_DIR = Path(__file__).resolve().parent
GPT2_VOCAB_SIZE = 50257  # real GPT-2 vocabulary; the model pads it to a multiple of 64
GPT2_EOT = 50256  # <|endoftext|>, the document separator in every shard


class UsageError(Exception):
    """A problem with the user's input (flags, data, checkpoint, output dir): printed as one line,
    exit code 2."""

    exit_code = 2


def usage_error(message):
    """For the scripts in tools/ and data/: report bad input as the trainer does, in one line on
    stderr, and exit with code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(UsageError.exit_code)


class TrainingStopped(UsageError):
    """A fault met while training (a full disk, a diverging loss): one line that says how to go on,
    exit code 1. The last checkpoint on disk is whole and can be resumed."""

    exit_code = 1


def os_error_in(exc):
    """The OSError behind exc, or None: torch.save reports a failed write as a RuntimeError whose
    context holds the OSError."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__cause__ or exc.__context__
    return exc


@contextmanager
def atomic_write(path, mode="wb"):
    """A file object for path's temporary twin: on success it is fsynced and renamed over path, on
    any failure or interrupt it is removed, so path is never half-written and no partial file stays
    behind (a full disk is reported as such)."""
    tmp = Path(f"{path}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        os_error = os_error_in(e)
        if os_error is not None and os_error.errno == errno.ENOSPC:
            raise TrainingStopped(f"no space left on the device writing {path} (the partial file was removed): free some space") from e
        raise


# -----------------------------------------------------------------------------
# Config


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest sequence the rotary tables cover
    vocab_size: int = 50304  # GPT-2's 50257 padded to a multiple of 64 for faster matmuls
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads; head_dim = n_embd // n_head
    n_embd: int = 768  # width of the residual stream
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    norm_type: str = "layernorm"  # "layernorm" (GPT-2, eps 1e-5) or "rmsnorm" (eps 1e-6)
    rope_theta: float = 10000.0  # base of the rotary embedding frequencies
    # Peri-LN / Gemma 2 "sandwich": keep the pre-norm and also normalize each sublayer's output
    # before the residual add, x = x + Norm(Attn(Norm(x))); steadies activation growth with depth
    post_norm: bool = False
    # per-head RMSNorm (learnable gain of size head_dim) on q and k before RoPE, as in Qwen3 and
    # Gemma 3: bounds attention logits, which keeps high learning rates from blowing them up
    qk_norm: bool = False
    # >0: local attention, each token attending to itself and the sliding_window - 1 tokens before it
    sliding_window: int = 0
    # with sliding_window: every k-th layer (the k-th, 2k-th, ...) stays global, full causal, the way
    # Gemma 3 interleaves 5 local layers with 1 global one; 0: every layer is local
    global_attn_every: int = 0
    # Multi-Head Latent Attention (DeepSeek-V2): MultiHeadLatentAttention layers, FlashMLA where
    # the kernel is FlashAttention (--attn_backend flash_attn; under auto, FlashAttention-4 where
    # it runs, and flash-attn 2 for windows)
    use_flash_mla: bool = False
    kv_lora_rank: int = 256  # MLA: width of the shared key/value latent
    q_lora_rank: int = 0  # MLA: 0 projects queries directly (V2-Lite); > 0 through a latent of this width
    qk_nope_head_dim: int = 64  # MLA: per-head query/key width without RoPE
    qk_rope_head_dim: int = 32  # MLA: per-head rotary query width, and the shared rotary key's
    v_head_dim: int = 64  # MLA: per-head value width

    def validate(self):
        if self.norm_type not in NORM_TYPES:
            raise UsageError(f"norm_type must be one of {', '.join(NORM_TYPES)}, not {self.norm_type!r}")
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, not {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise UsageError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2:
            raise UsageError(f"head_dim = n_embd / n_head = {self.n_embd // self.n_head} must be even for rotary embeddings")
        if self.use_flash_mla and (self.qk_rope_head_dim % 2 or min(self.kv_lora_rank, self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim) < 1 or self.q_lora_rank < 0):
            raise UsageError("MLA needs positive kv_lora_rank, qk_nope_head_dim, v_head_dim, an even qk_rope_head_dim, and q_lora_rank >= 0")
        if not self.rope_theta > 0:
            raise UsageError(f"rope_theta must be positive, not {self.rope_theta}")
        if self.sliding_window < 0 or self.global_attn_every < 0:
            raise UsageError("sliding_window and global_attn_every must not be negative")
        if self.global_attn_every and not self.sliding_window:
            raise UsageError("global_attn_every needs sliding_window > 0 (without a window every layer is global)")
        if self.vocab_size < GPT2_VOCAB_SIZE:
            raise UsageError(f"vocab_size ({self.vocab_size}) must cover GPT-2's {GPT2_VOCAB_SIZE} tokens")


MODEL_CONFIGS = {
    "d12": GPTConfig(n_layer=12, n_head=12, n_embd=768),  # GPT-2 124M
    "d24": GPTConfig(n_layer=24, n_head=16, n_embd=1024),  # GPT-2 350M
    "d36": GPTConfig(n_layer=36, n_head=20, n_embd=1280),  # GPT-2 774M
    "d48": GPTConfig(n_layer=48, n_head=25, n_embd=1600),  # GPT-2 1558M
    "d12_post_norm": GPTConfig(post_norm=True),
    "d12_post_norm_qk_norm": GPTConfig(post_norm=True, qk_norm=True),
    # a quarter of the 1024-token context, with layers 4, 8 and 12 global (see the README)
    "d12_sliding_window": GPTConfig(sliding_window=256, global_attn_every=4),
    # DeepSeek-V2's dims scaled to 768 wide (kv_lora_rank 256, qk 64 + 32, v 64): the defaults above
    "d12_flash_mla": GPTConfig(use_flash_mla=True),
}


# -----------------------------------------------------------------------------
# Layers

NORM_TYPES = ("layernorm", "rmsnorm")
LAYER_NORM_EPS = 1e-5  # GPT-2's
RMS_NORM_EPS = 1e-6  # explicit: F.rms_norm's default in bf16 would be 0.0078


class Norm(nn.Module):
    """LayerNorm or RMSNorm with statistics in fp32 whatever the input dtype."""

    def __init__(self, dim, norm_type, bias):
        super().__init__()
        self.norm_type = norm_type
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias and norm_type == "layernorm" else None

    def forward(self, x):
        shape = (x.size(-1),)
        if self.norm_type == "layernorm":
            y = F.layer_norm(x.float(), shape, self.weight, self.bias, eps=LAYER_NORM_EPS)
        else:
            y = F.rms_norm(x.float(), shape, self.weight, eps=RMS_NORM_EPS)
        return y.type_as(x)


class Rotary(nn.Module):
    """Rotary position embedding tables (RoFormer); rotates the first and second half of each head."""

    def __init__(self, dim, max_seq_len, theta):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
        # non-persistent: derived from the config, so checkpoints do not carry them
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x, pos=0):
        """x: (B, T, H, dim) at positions pos, pos + 1, ... -> the same, rotated by position."""
        T = x.size(1)
        cos = self.cos[None, pos : pos + T, None, :].to(x.dtype)
        sin = self.sin[None, pos : pos + T, None, :].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class QKNorm(nn.Module):
    """Per-head RMSNorm of queries and keys, each with its own gain of size head_dim.
    Every attention class applies it after splitting heads and before RoPE: a non-uniform gain
    does not commute with the rotation, and the papers normalize first."""

    def __init__(self, head_dim):
        super().__init__()
        self.q_norm = Norm(head_dim, "rmsnorm", bias=False)
        self.k_norm = Norm(head_dim, "rmsnorm", bias=False)

    def forward(self, q, k):
        return self.q_norm(q), self.k_norm(k)


def is_sliding_window_layer(config, layer_idx):
    return config.sliding_window > 0 and not (config.global_attn_every and (layer_idx + 1) % config.global_attn_every == 0)


# -----------------------------------------------------------------------------
# Attention kernels
#
# The attention classes below hold the math; the kernel that computes softmax(q k^T / sqrt(D_qk)) v,
# causal and optionally windowed, is an AttentionKernel chosen once per layer when the model is
# placed on its device and dtype (GPT.set_kernels), from the table KERNEL_CHOICES. A new
# kernel is one AttentionKernel subclass plus its entry in that table. The MLP, the loss, the
# q, k, v projection and the residual add with its norm choose theirs the same way, from
# FUSED_CHOICES.


@dataclass(frozen=True)
class KernelNeeds:
    """What a layer asks of its kernel, and where it runs."""

    window: int  # keys each query sees, itself included (0: all before it)
    qk_dim: int
    v_dim: int
    device_type: str
    capability: tuple  # CUDA compute capability, () elsewhere
    dtype: torch.dtype  # of q, k and v: the autocast dtype where autocast is on


def device_capability(device):
    """CUDA compute capability of a torch.device, () elsewhere: what the kernel choices compare."""
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else ()


class AttentionKernel:
    """Causal attention on (B, T, H, D) tensors: q and k of D_qk, v of D_v, out (B, T, H, D_v), softmax
    scale 1/sqrt(D_qk). A window w > 0 lets each query see itself and the w - 1 keys before it."""

    name = ""  # as the startup log names it
    flash_attention = False  # FlashAttention of the flash-attn package: its layers are the Flash classes

    def __init__(self, window):
        self.window = window

    @staticmethod
    def unavailable(needs):
        """Why this kernel cannot serve the layer here, or None where it can."""
        return None

    def flash_window_size(self):
        """The window as flash-attn takes it: (keys before the query, keys after); -1 is unbounded."""
        return (self.window - 1, 0) if self.window else (-1, -1)

    def __call__(self, q, k, v):
        raise NotImplementedError

    def packed(self, qkv, rotary, qk_norm):
        """Attention on a (B, T, 3, H, D) projection whose q and k are not yet normalized (qk_norm,
        or None) and rotated (rotary, or None where the projection rotated them). Here: split,
        normalize, rotate, call the kernel; a kernel that reads q, k and v in place overrides it."""
        q, k, v = qkv.unbind(dim=2)
        return self(*normalize_and_rotate(q, k, rotary, qk_norm), v)

    def with_query_rope(self, q, k, v, rotary, start):
        """Attention on q whose dims from start on are still to be rotated, and on k as it is (MLA's
        decoupled RoPE)."""
        return self(self.query_rope(q, rotary, start), k, v)

    def query_rope(self, q, rotary, start):
        """q's dims from start on rotated (q as it is where rotary is None: the projection rotated
        them): here out of place; a kernel may rotate them in place."""
        return q if rotary is None else rotate_from(q, rotary, start)

    def kv_packed(self, q, kv, rotary, start):
        """with_query_rope on MLA's keys and values packed per head in one (B, T, H, D_qk + D_v)
        tensor, k first. Here split into views; a kernel that writes both gradients into one tensor
        of that layout overrides it."""
        return self.with_query_rope(q, *split_kv(kv, q.size(-1)), rotary, start)


def normalize_and_rotate(q, k, rotary, qk_norm, pos=0):
    """QK-norm (where the layer has it), then RoPE, on (B, T, H, D) queries and keys."""
    if qk_norm is not None:
        q, k = qk_norm(q, k)
    return (q, k) if rotary is None else (rotary(q, pos), rotary(k, pos))


def split_kv(kv, qk_dim):
    """k and v, views of MLA's packed (B, T, H, qk_dim + v_dim) keys and values."""
    return kv.split((qk_dim, kv.size(-1) - qk_dim), dim=-1)


def rotate_from(t, rotary, start):
    """RoPE on the dims of each head from start on (MLA's rotary part); those before pass as they are."""
    return torch.cat((t[..., :start], rotary(t[..., start:])), dim=-1)


def sdpa(q, k, v, mask=None):
    """F.scaled_dot_product_attention on (B, T, H, D) tensors: causal, or under a boolean (queries,
    keys) mask."""
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, is_causal=mask is None)
    return y.transpose(1, 2)


class SDPA(AttentionKernel):
    """F.scaled_dot_product_attention; PyTorch picks its backend (cuDNN's on Hopper)."""

    name = "SDPA"

    @staticmethod
    def unavailable(needs):
        return "SDPA has no sliding window" if needs.window else None

    def __call__(self, q, k, v):
        return sdpa(q, k, v)


class WindowKernel(AttentionKernel):
    """A kernel for sliding windows; a window that holds the whole sequence is plain causal attention."""

    @staticmethod
    def unavailable(needs):
        return None if needs.window else "for sliding windows only"

    def __call__(self, q, k, v):
        return sdpa(q, k, v) if self.window >= q.size(1) else self.windowed(q, k, v)


_block_masks = {}


@torch.compiler.disable  # built once per (T, W, device), outside any compiled graph
def sliding_window_block_mask(T, window, device):
    """flex_attention's block mask for a causal window; it stores per-block indices, O((T/128)^2)."""
    key = (T, window, str(device))
    if key not in _block_masks:
        def in_window(b, h, q_idx, kv_idx):
            return (kv_idx <= q_idx) & (q_idx - kv_idx < window)

        before = torch.cuda.memory_allocated(device)
        _block_masks[key] = create_block_mask(in_window, B=None, H=None, Q_LEN=T, KV_LEN=T, device=device)
        if int(os.environ.get("RANK", 0)) == 0:
            print(f"sliding window: flex_attention block mask for T={T}, W={window} built, {(torch.cuda.memory_allocated(device) - before) / 2**20:.2f} MiB")
    return _block_masks[key]


compiled_flex_attention = torch.compile(flex_attention, dynamic=False)  # eager flex_attention materializes the scores


class FlexAttention(WindowKernel):
    """flex_attention with a cached block mask: windows on CUDA without flash-attn."""

    name = "flex_attention"

    @staticmethod
    def unavailable(needs):
        return WindowKernel.unavailable(needs) or (None if needs.device_type == "cuda" else "flex_attention needs CUDA here")

    def windowed(self, q, k, v):
        mask = sliding_window_block_mask(q.size(1), self.window, q.device)
        return compiled_flex_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=mask).transpose(1, 2)


def window_mask(q_positions, k_positions, window):
    """Boolean (queries, keys) mask, True where a query may attend: causal, and within the window."""
    distance = q_positions[:, None] - k_positions[None, :]
    return (distance >= 0) & (distance < window) if window else distance >= 0


def decode_attention(q, k, v, pos, window):
    """New queries at positions pos, pos + 1, ... over every cached key (KV-cache decoding, any kernel)."""
    S, t = k.size(1), q.size(1)
    return sdpa(q, k, v, window_mask(torch.arange(pos, pos + t, device=q.device), torch.arange(S, device=q.device), window))


class MaskedSDPA(WindowKernel):
    """SDPA with a dense (T, T) window mask, cached per (T, device): windows anywhere (the CPU path)."""

    name = "SDPA + mask"

    def __init__(self, window):
        super().__init__(window)
        self.masks = {}

    def windowed(self, q, k, v):
        key = (q.size(1), str(q.device))
        if key not in self.masks:
            pos = torch.arange(q.size(1), device=q.device)
            self.masks[key] = window_mask(pos, pos, self.window)
        return sdpa(q, k, v, self.masks[key])


def flash_attn_unavailable(needs):
    """Why the flash-attn package cannot run here, or None when it can."""
    if flash_attn_func is None:
        return "flash-attn is not installed (pip install flash-attn)"
    return flash_placement_unavailable(needs)


def flash_placement_unavailable(needs):
    """Why FlashAttention cannot run on this device, dtype and head dims, or None."""
    if needs.device_type != "cuda":
        return "flash-attn needs a CUDA GPU"
    if needs.capability < (8, 0):
        return f"flash-attn needs compute capability 8.0 or newer, not {needs.capability[0]}.{needs.capability[1]}"
    if needs.dtype not in (torch.float16, torch.bfloat16):
        return f"flash-attn needs fp16 or bf16, not {str(needs.dtype).removeprefix('torch.')}"
    if max(needs.qk_dim, needs.v_dim) > 256:
        return f"flash-attn takes head dims up to 256, not {max(needs.qk_dim, needs.v_dim)}"
    return None


class FlashAttention2(AttentionKernel):
    """flash-attn's FlashAttention-2. It needs one head dim for q, k and v: the smaller side is
    zero-padded (which adds nothing to the scores) with the softmax scale of the real q dim, and
    the output sliced back."""

    name = "flash-attn 2"
    flash_attention = True
    unavailable = staticmethod(flash_attn_unavailable)

    def __call__(self, q, k, v):
        qk_dim, v_dim = q.size(-1), v.size(-1)
        if qk_dim < v_dim:
            q, k = F.pad(q, (0, v_dim - qk_dim)), F.pad(k, (0, v_dim - qk_dim))
        elif v_dim < qk_dim:
            v = F.pad(v, (0, qk_dim - v_dim))
        out = flash_attn_func(q, k, v, softmax_scale=qk_dim**-0.5, causal=True, window_size=self.flash_window_size())
        return out[..., :v_dim] if out.size(-1) != v_dim else out


class FlashAttention3(AttentionKernel):
    """flash-attn's FlashAttention-3 for Hopper (its hopper/ build): equal head dims, or the pairs
    with a smaller V it allows, without padding."""

    name = "flash-attn 3"
    flash_attention = True

    @staticmethod
    def unavailable(needs):
        if flash_attn3_func is None:
            return "flash-attn 3 is not installed"
        if needs.capability[:1] != (9,):
            return "flash-attn 3 is for Hopper GPUs"
        if not (needs.qk_dim == needs.v_dim or (128 < needs.qk_dim <= 192 and 96 < needs.v_dim <= 128)):
            return f"flash-attn 3 does not take head dims {needs.qk_dim}/{needs.v_dim}"
        return flash_placement_unavailable(needs)

    def __call__(self, q, k, v):
        out = flash_attn3_func(q, k, v, causal=True, window_size=self.flash_window_size())
        return out[0] if isinstance(out, tuple) else out  # older FA3 releases also return the LSE


def flash_attn4_window(window):
    """FlashAttention-4's (window_size_left, window_size_right): None is unbounded."""
    return (window - 1, 0) if window else (None, None)


# FA4 picks its Hopper forward tile by head dim alone, sized for equal q/k and v dims. At MLA's 96/64
# its 192x128 tile ran slower than 128x128 with P @ V from registers, alone (tools/bench_fa4_tiles.py)
# and in whole-step profiles (docs/PERFORMANCE.md). (q/k dim, v dim) -> _flash_attn_fwd's tile
# arguments, for full causal attention on sm90; FA4 chooses for every other case.
FLASH_ATTN4_SM90_FORWARD_TILES = {(96, 64): {"tile_mn": (128, 128), "mma_pv_is_rs": True, "intra_wg_overlap": True}}


def flash_attn4_forward_tile(qk_dim, v_dim, window, capability):
    """FLASH_ATTN4_SM90_FORWARD_TILES' entry for these head dims where it applies, else none."""
    if window or capability[:1] != (9,):
        return {}
    return FLASH_ATTN4_SM90_FORWARD_TILES.get((qk_dim, v_dim), {})


def flash_attn4_attend(q, k, v, window):
    """FlashAttention-4's forward on (B, T, H, D) q, k, v (strided views of one tensor will do):
    the output and the softmax's logsumexp (B, H, T), which the backward takes."""
    left, right = flash_attn4_window(window)
    tile = flash_attn4_forward_tile(q.size(-1), v.size(-1), window, device_capability(q.device))
    out, lse, *_ = flash_attn4._flash_attn_fwd(q, k, v, softmax_scale=q.size(-1) ** -0.5, causal=True, window_size_left=left, window_size_right=right, return_lse=True, **tile)
    return out, lse


def flash_attn4_attend_backward(grad_out, q, k, v, out, lse, window, dq=None, dk=None, dv=None):
    """FlashAttention-4's backward: dq, dk, dv, written into the given tensors where given."""
    left, right = flash_attn4_window(window)
    return flash_attn4._flash_attn_bwd(q, k, v, out, grad_out, lse, softmax_scale=q.size(-1) ** -0.5, causal=True, window_size_left=left, window_size_right=right, dq=dq, dk=dk, dv=dv)


def attention_output_like(q, v):
    """Empty tensors shaped as attention's output and logsumexp, for the custom ops' fakes."""
    B, T, H, _ = q.shape
    return q.new_empty(B, T, H, v.size(-1)), q.new_empty(B, H, T, dtype=torch.float32)


# FlashAttention-4's own entry is an autograd.Function, which torch.compile cannot trace through: as
# custom ops with fake implementations (shapes only) the compiled model keeps one graph. Three pairs:
# on q, k, v apart; on the packed (B, T, 3, H, D) projection, whose gradient FA4 then writes in
# place, with no copy to stack dq, dk and dv; and on q with MLA's packed keys and values, likewise.
@torch.library.custom_op("train_gpt2_mod::flash_attn4_forward", mutates_args=())
def flash_attn4_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    return flash_attn4_attend(q, k, v, window)


@flash_attn4_forward.register_fake
def _(q, k, v, window):
    return attention_output_like(q, v)


@torch.library.custom_op("train_gpt2_mod::flash_attn4_backward", mutates_args=())
def flash_attn4_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv, *_ = flash_attn4_attend_backward(grad_out, q, k, v, out, lse, window)
    return dq, dk, dv


@flash_attn4_backward.register_fake
def _(grad_out, q, k, v, out, lse, window):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def flash_attn4_save(ctx, inputs, output):
    *tensors, ctx.window = inputs
    ctx.save_for_backward(*tensors, *output)


def flash_attn4_grads(ctx, grad_out, grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    return *torch.ops.train_gpt2_mod.flash_attn4_backward(grad_out.contiguous(), q, k, v, out, lse, ctx.window), None


flash_attn4_forward.register_autograd(flash_attn4_grads, setup_context=flash_attn4_save)


@torch.library.custom_op("train_gpt2_mod::flash_attn4_packed_forward", mutates_args=())
def flash_attn4_packed_forward(qkv: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    return flash_attn4_attend(*qkv.unbind(dim=2), window)


@flash_attn4_packed_forward.register_fake
def _(qkv, window):
    return attention_output_like(qkv[:, :, 0], qkv[:, :, 2])


@torch.library.custom_op("train_gpt2_mod::flash_attn4_packed_backward", mutates_args=())
def flash_attn4_packed_backward(grad_out: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, window: int) -> torch.Tensor:
    grad_qkv = torch.empty_like(qkv)
    flash_attn4_attend_backward(grad_out, *qkv.unbind(dim=2), out, lse, window, *grad_qkv.unbind(dim=2))
    return grad_qkv


@flash_attn4_packed_backward.register_fake
def _(grad_out, qkv, out, lse, window):
    return torch.empty_like(qkv)


def flash_attn4_packed_grads(ctx, grad_out, grad_lse):
    qkv, out, lse = ctx.saved_tensors
    return torch.ops.train_gpt2_mod.flash_attn4_packed_backward(grad_out.contiguous(), qkv, out, lse, ctx.window), None


flash_attn4_packed_forward.register_autograd(flash_attn4_packed_grads, setup_context=flash_attn4_save)


@torch.library.custom_op("train_gpt2_mod::flash_attn4_kv_packed_forward", mutates_args=())
def flash_attn4_kv_packed_forward(q: torch.Tensor, kv: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    return flash_attn4_attend(q, *split_kv(kv, q.size(-1)), window)


@flash_attn4_kv_packed_forward.register_fake
def _(q, kv, window):
    return attention_output_like(q, split_kv(kv, q.size(-1))[1])


@torch.library.custom_op("train_gpt2_mod::flash_attn4_kv_packed_backward", mutates_args=())
def flash_attn4_kv_packed_backward(grad_out: torch.Tensor, q: torch.Tensor, kv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    grad_q, grad_kv = torch.empty_like(q), torch.empty_like(kv)
    flash_attn4_attend_backward(grad_out, q, *split_kv(kv, q.size(-1)), out, lse, window, grad_q, *split_kv(grad_kv, q.size(-1)))
    return grad_q, grad_kv


@flash_attn4_kv_packed_backward.register_fake
def _(grad_out, q, kv, out, lse, window):
    return torch.empty_like(q), torch.empty_like(kv)


def flash_attn4_kv_packed_grads(ctx, grad_out, grad_lse):
    q, kv, out, lse = ctx.saved_tensors
    return *torch.ops.train_gpt2_mod.flash_attn4_kv_packed_backward(grad_out.contiguous(), q, kv, out, lse, ctx.window), None


flash_attn4_kv_packed_forward.register_autograd(flash_attn4_kv_packed_grads, setup_context=flash_attn4_save)


class QuackRotateInPlace(torch.autograd.Function):
    """RoPE by quack's kernel on the dims from start on of a (B, T, H, D) tensor, in place, and in
    backward on its gradient: only the rotated dims are read and written, where rotate_from copies
    the whole tensor in each direction. cos and sin: the (T, dim / 2) fp32 tables."""

    @staticmethod
    def forward(ctx, t, cos, sin, start):
        quack_rotary(t[..., start:], cos, sin, inplace=True)
        ctx.mark_dirty(t)
        ctx.save_for_backward(cos, sin)
        ctx.start = start
        return t

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        # in place: the gradient is the attention kernel's own fresh dq, which nothing else reads
        quack_rotary(grad[..., ctx.start :], cos, sin, inplace=True, conjugate=True)
        return grad, None, None, None


class FlashAttention4(AttentionKernel):
    """FlashAttention-4 (flash-attn-4's CuTe kernels) for Hopper and Blackwell: any q/k and v head
    dims up to 256 (multiples of 8), windows included, without padding."""

    name = "flash-attn 4"
    flash_attention = True

    @staticmethod
    def unavailable(needs):
        if flash_attn4 is None:
            return "flash-attn 4 is not installed (pip install -r requirements-hopper.txt)"
        reason = flash_placement_unavailable(needs)
        if reason is None and needs.capability[:1] not in ((9,), (10,)):
            reason = "flash-attn 4 is for Hopper and Blackwell GPUs (sm90, sm100)"
        if reason is None and (needs.qk_dim % 8 or needs.v_dim % 8):
            reason = f"flash-attn 4 needs head dims that are multiples of 8, not {needs.qk_dim}/{needs.v_dim}"
        return reason

    def __call__(self, q, k, v):
        return torch.ops.train_gpt2_mod.flash_attn4_forward(q, k, v, self.window)[0]

    def packed(self, qkv, rotary, qk_norm):
        """With no QK-norm: FA4 reads q, k, v from the projection and writes its gradient, q and k
        rotated in place by quack where the projection has not rotated them (and their gradient in
        place in backward)."""
        if qk_norm is not None or (rotary is not None and quack_rotary_qkv_ is None):
            return super().packed(qkv, rotary, qk_norm)
        if rotary is not None:
            T = qkv.size(1)
            # the fp32 tables as they are (Rotary.forward rounds them to the compute dtype first):
            # the same rotation, within bf16 rounding
            qkv = quack_rotary_qkv_(qkv, rotary.cos[:T], rotary.sin[:T])
        return torch.ops.train_gpt2_mod.flash_attn4_packed_forward(qkv, self.window)[0]

    def query_rope(self, q, rotary, start):
        """With quack, in place (q is the projection's output, which nothing else reads)."""
        if rotary is None or quack_rotary is None or (q.size(-1) - start) % 8:  # quack rotates multiples of 8 dims
            return super().query_rope(q, rotary, start)
        T = q.size(1)
        return QuackRotateInPlace.apply(q, rotary.cos[:T], rotary.sin[:T], start)

    def kv_packed(self, q, kv, rotary, start):
        """FA4 reads k and v from kv and writes their gradient into one tensor of its layout, which
        the up-projection's backward takes as it is."""
        return torch.ops.train_gpt2_mod.flash_attn4_kv_packed_forward(self.query_rope(q, rotary, start), kv, self.window)[0]


# The kernels each --attn_backend may run, for full causal layers and for sliding-window layers, in
# order of preference: the first that can run here serves the layer. "auto" lists the fastest
# measured first (docs/PERFORMANCE.md: on Hopper FlashAttention-4 beat cuDNN's SDPA, most for MLA's
# head dims and windows, and cuDNN's SDPA beat flash-attn 2; SDPA has no window); "flash_attn" is
# FlashAttention or an error at startup.
KERNEL_CHOICES = {
    "auto": {"causal": (FlashAttention4, SDPA), "window": (FlashAttention4, FlashAttention3, FlashAttention2, FlexAttention, MaskedSDPA)},
    "flash_attn": {"causal": (FlashAttention4, FlashAttention3, FlashAttention2), "window": (FlashAttention4, FlashAttention3, FlashAttention2)},
    "sdpa": {"causal": (SDPA,), "window": (FlexAttention, MaskedSDPA)},
}


def choose_kernel(backend, needs):
    """The kernel that serves a layer: the first of the backend's choices that can run here."""
    choices = KERNEL_CHOICES[backend]["window" if needs.window else "causal"]
    reasons = []
    for kernel in choices:
        reason = kernel.unavailable(needs)
        if reason is None:
            return kernel(needs.window)
        reasons.append(reason)
    raise UsageError(f"--attn_backend {backend}, but {'; '.join(dict.fromkeys(reasons))}: use --attn_backend auto or sdpa")


def portable_kernel(window, qk_dim, v_dim):
    """The kernel a layer starts with, until GPT.set_kernels places it: one that runs
    anywhere."""
    return choose_kernel("sdpa", KernelNeeds(window, qk_dim, v_dim, "cpu", (), torch.float32))


class CausalSelfAttention(nn.Module):
    """Multi-head attention with rotary positions, optionally over a sliding window."""

    def __init__(self, config, window=0):
        super().__init__()
        self.window = window  # keys each query sees, itself included (0: all before it)
        self.n_head = config.n_head
        self.head_dim = self.qk_dim = self.v_dim = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.rotary = Rotary(self.head_dim, config.block_size, config.rope_theta)
        self.qk_norm = QKNorm(self.head_dim) if config.qk_norm else None
        self.kernel = portable_kernel(window, self.qk_dim, self.v_dim)
        self.qkv_kernel = TorchQKV()  # until GPT.set_kernels chooses

    def cache_shapes(self):
        """Per token: the rotated keys and the values of every head."""
        return {"k": (self.n_head, self.head_dim), "v": (self.n_head, self.head_dim)}

    def forward(self, x, cache=None, pos=0):
        B, T, C = x.size()
        if cache is None:
            qkv = self.qkv_kernel(self, x).view(B, T, 3, self.n_head, self.head_dim)
            y = self.kernel.packed(qkv, None if self.qkv_kernel.rotates else self.rotary, self.qk_norm)
        else:
            q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim).unbind(dim=2)
            q, k = normalize_and_rotate(q, k, self.rotary, self.qk_norm, pos)
            cache["k"][:, pos : pos + T], cache["v"][:, pos : pos + T] = k, v
            y = decode_attention(q, cache["k"][:, : pos + T], cache["v"][:, : pos + T], pos, self.window)
        return self.c_proj(y.reshape(B, T, C))


class FlashCausalSelfAttention(CausalSelfAttention):
    """CausalSelfAttention whose kernel is FlashAttention (the flash-attn package): the class a layer
    takes when GPT.set_kernels gives it that kernel. The same parameters, so a checkpoint
    loads into either."""


def with_key_slots(weight, heads, nope, rope):
    """wkv_b's weight widened to map [c_kv ; k_rope] to each head's [k_nope ; k_rope ; v]: per head the
    rows of W_uk, an identity block that copies the shared key part, then the rows of W_uv; zero
    where a row meets the other input."""
    rank = weight.size(-1)
    w = F.pad(weight.view(heads, -1, rank), (0, rope))
    copy = F.pad(torch.eye(rope, dtype=weight.dtype, device=weight.device), (rank, 0)).expand(heads, rope, rank + rope)
    return torch.cat((w[:, :nope], copy, w[:, nope:]), dim=1).flatten(0, 1)


def slotted_key_values(c_kv, k_rope, weight, heads, nope):
    """MLA's keys and values packed per head as [k_nope ; k_rope ; v] (B, T, H, qk_dim + v_dim):
    W_uk c_kv, the shared key part, W_uv c_kv, from c_kv (B, T, kv_lora_rank), k_rope (B, T, 1,
    rope) and wkv_b's weight. One GEMM on [c_kv ; k_rope] writes every column, the shared part
    included, so k and v are views of one tensor, which FlashAttention-4 reads and whose gradient it
    writes whole; the GEMM's backward sums the shared part's gradient over heads, and gives it
    beside c_kv's."""
    B, T, _ = c_kv.size()
    latent = torch.cat((c_kv, k_rope.flatten(2)), dim=-1)
    return F.linear(latent, with_key_slots(weight, heads, nope, k_rope.size(-1))).view(B, T, heads, -1)


class MultiHeadLatentAttention(nn.Module):
    """DeepSeek-V2 Multi-Head Latent Attention (section 2.1).

    Keys and values come from a shared latent c_kv = RMSNorm(W_dkv h) of width kv_lora_rank:
    k_nope = W_uk c_kv and v = W_uv c_kv per head. Decoupled RoPE: each head's query has a rotary
    part of width qk_rope_head_dim, and one rotary key part, computed from h, is shared by all heads;
    RoPE never touches the nope parts. Softmax scale 1/sqrt(qk_nope_head_dim + qk_rope_head_dim).
    Training materializes k and v per head; decoding caches only c_kv and the shared rotary key and
    absorbs W_uk into the query and W_uv into the output.
    """

    def __init__(self, config, window=0):
        super().__init__()
        self.window = window
        C, H = config.n_embd, config.n_head
        self.n_head, self.kv_rank = H, config.kv_lora_rank
        self.nope, self.rope, self.v_dim = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
        self.qk_dim = self.nope + self.rope
        if config.q_lora_rank:
            self.wq_a = nn.Linear(C, config.q_lora_rank, bias=False)
            self.q_norm = Norm(config.q_lora_rank, "rmsnorm", bias=False)
            self.wq_b = nn.Linear(config.q_lora_rank, H * self.qk_dim, bias=False)
        else:
            self.wq = nn.Linear(C, H * self.qk_dim, bias=False)
        self.wkv_a = nn.Linear(C, self.kv_rank + self.rope, bias=False)  # [c_kv ; k_rope]
        self.kv_norm = Norm(self.kv_rank, "rmsnorm", bias=False)
        self.wkv_b = nn.Linear(self.kv_rank, H * (self.nope + self.v_dim), bias=False)  # [W_uk ; W_uv] per head
        self.c_proj = nn.Linear(H * self.v_dim, C, bias=False)
        self.rotary = Rotary(self.rope, config.block_size, config.rope_theta)
        self.qk_norm = QKNorm(self.qk_dim) if config.qk_norm else None
        self.kernel = portable_kernel(window, self.qk_dim, self.v_dim)
        self.qkv_kernel = TorchQKV()  # until GPT.set_kernels chooses

    def queries(self, x):
        B, T, _ = x.size()
        q = self.wq_b(self.q_norm(self.wq_a(x))) if hasattr(self, "wq_a") else self.wq(x)
        return q.view(B, T, self.n_head, self.qk_dim)

    def latent(self, x):
        """The normalized KV latent (B, T, kv_lora_rank) and the shared, unrotated key part (B, T, 1, rope)."""
        return self.split_latent(self.wkv_a(x))

    def split_latent(self, latent):
        """wkv_a's output [c_kv ; k_rope] as the normalized c_kv and the shared key part (B, T, 1, rope)."""
        c_kv, k_rope = latent.split((self.kv_rank, self.rope), dim=-1)
        return self.kv_norm(c_kv), k_rope.unsqueeze(2)

    def forward(self, x, cache=None, pos=0):
        if cache is not None:
            return self.decode(x, cache, pos)
        B, T, _ = x.size()
        q, latent = self.qkv_kernel.queries_and_latent(self, x)
        # RoPE on the last qk_rope_head_dim dims only
        y = self.attend(q, *self.split_latent(latent), self.qkv_kernel.rotates)
        return self.c_proj(y.reshape(B, T, self.n_head * self.v_dim))

    def attend(self, q, c_kv, k_rope, rotated=False):
        """The kernel's attention of the queries on the keys and values of the latent, the rotary dims
        of q and k_rope rotated already where rotated says (by the projection, in RoPE's pairs made
        adjacent alike)."""
        if self.qk_norm is None:
            # the shared key part rotated once for all heads, not in each head's copy
            kv = slotted_key_values(c_kv, k_rope if rotated else self.rotary(k_rope), self.wkv_b.weight, self.n_head, self.nope)
            return self.kernel.kv_packed(q, kv, None if rotated else self.rotary, self.nope)
        # each head's norm scales its copy of the shared part differently, and comes before RoPE
        k, v = split_kv(slotted_key_values(c_kv, k_rope, self.wkv_b.weight, self.n_head, self.nope), self.qk_dim)
        q, k = self.qk_norm(q, k)
        return self.kernel.with_query_rope(q, rotate_from(k, self.rotary, self.nope), v, self.rotary, self.nope)

    def cache_shapes(self):
        """Per token: the latent and the rotated shared key, 288 values for d12; with qk_norm also each
        head's key RMS, which depends on W_uk c_kv and so cannot be absorbed."""
        shapes = {"c_kv": (self.kv_rank,), "k_rope": (self.rope,)}
        if self.qk_norm is not None:
            shapes["k_rms"] = (self.n_head,)
        return shapes

    def decode(self, x, cache, pos):
        """The forward pass with W_uk absorbed into the query and W_uv into the output."""
        B, T, _ = x.size()
        q = self.queries(x)
        c_kv, k_rope = self.latent(x)
        w = self.wkv_b.weight.view(self.n_head, self.nope + self.v_dim, self.kv_rank)
        w_uk, w_uv = w[:, : self.nope], w[:, self.nope :]
        q_nope, q_rope = q.split((self.nope, self.rope), dim=-1)
        if self.qk_norm is not None:
            # k' = g * [k_nope ; k_rope] / rms per head: fold g into the query side and keep 1/rms per token and head
            q_nope, q_rope = self.qk_norm.q_norm(q).split((self.nope, self.rope), dim=-1)
            gain = self.qk_norm.k_norm.weight
            k_nope = torch.einsum("btc,hnc->bthn", c_kv, w_uk)
            k_full = torch.cat((k_nope, k_rope.expand(B, T, self.n_head, self.rope)), dim=-1).float()
            cache["k_rms"][:, pos : pos + T] = torch.rsqrt(k_full.pow(2).mean(-1) + RMS_NORM_EPS)
            q_nope, k_rope = q_nope * gain[: self.nope], k_rope * gain[self.nope :]
        cache["c_kv"][:, pos : pos + T] = c_kv
        cache["k_rope"][:, pos : pos + T] = self.rotary(k_rope, pos).squeeze(2)
        S = pos + T
        q_latent = torch.einsum("bthn,hnc->bthc", q_nope, w_uk)
        scores = torch.einsum("bthc,bsc->bhts", q_latent, cache["c_kv"][:, :S]) + torch.einsum("bthr,bsr->bhts", self.rotary(q_rope, pos), cache["k_rope"][:, :S])
        if self.qk_norm is not None:
            scores = scores * cache["k_rms"][:, :S].transpose(1, 2)[:, :, None, :]
        mask = window_mask(torch.arange(pos, S, device=x.device), torch.arange(S, device=x.device), self.window)
        probs = F.softmax((scores * self.qk_dim**-0.5).masked_fill(~mask, float("-inf")).float(), dim=-1).type_as(scores)
        out_latent = torch.einsum("bhts,bsc->bthc", probs, cache["c_kv"][:, :S])
        y = torch.einsum("bthc,hvc->bthv", out_latent, w_uv)
        return self.c_proj(y.reshape(B, T, self.n_head * self.v_dim))


class FlashMLA(MultiHeadLatentAttention):
    """MultiHeadLatentAttention whose kernel is FlashAttention (the flash-attn packages: FA4 takes
    its head dims as they are, FA2 pads V to the q/k head dim): the class a layer takes when
    GPT.set_kernels gives it that kernel."""


# each attention class, and its twin whose kernel is FlashAttention
FLASH_CLASSES = {CausalSelfAttention: FlashCausalSelfAttention, MultiHeadLatentAttention: FlashMLA}


def place_attention(attn, backend, device, dtype):
    """Choose an attention layer's kernel for --attn_backend on this device and (autocast) dtype,
    once, and give the layer the class that names it: the Flash class where the kernel is
    FlashAttention. FlashAttention asked for and unable to run here is a UsageError."""
    device = torch.device(device)
    attn.kernel = choose_kernel(backend, KernelNeeds(attn.window, attn.qk_dim, attn.v_dim, device.type, device_capability(device), dtype))
    math_class = next(c for c in FLASH_CLASSES if isinstance(attn, c))
    # the Flash classes add no state or behaviour: switching the class only renames the layer
    attn.__class__ = FLASH_CLASSES[math_class] if attn.kernel.flash_attention else math_class


def quack_unavailable(device_type, capability, dtype):
    """Why quack's fused kernels cannot run on this device and (autocast) dtype, or None."""
    if quack_gemm is None:
        return "quack is not installed (pip install -r requirements-hopper.txt)"
    if device_type != "cuda" or capability < (9, 0):
        return "quack's kernels need a Hopper or newer GPU"
    if dtype != torch.bfloat16:
        return "quack's kernels run in bf16 only here"
    return None


def autocast_dtype(x):
    """The dtype matmuls on x run in: autocast's where it is on."""
    return torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype


class FusedKernel:
    """An MLP, loss, q, k, v projection or add-and-norm kernel of FUSED_CHOICES, as AttentionKernel is
    for attention."""

    name = ""  # as the startup log names it

    @staticmethod
    def unavailable(device_type, capability, dtype):
        """Why this kernel cannot run on this device and (autocast) dtype, or None where it can."""
        return None


class TorchMLP(FusedKernel):
    """The MLP as PyTorch ops (torch.compile fuses the bias and GELU)."""

    name = "PyTorch"

    def __call__(self, mlp, x):
        return mlp.c_proj(F.gelu(mlp.c_fc(x), approximate="tanh"))


# quack tunes each GEMM on its first call, but not under torch.compile one whose epilogue reduces
# (the graph would allocate the partial sums, at the tile's shape): as a custom op it runs eagerly,
# tuned, inside the compiled graph.
@torch.library.custom_op("train_gpt2_mod::quack_dgelu_dbias", mutates_args=())
def quack_dgelu_dbias(grad_out: torch.Tensor, weight: torch.Tensor, preact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """grad_out @ weight times GELU's derivative at preact, and its column sums (the gradient of
    preact's bias) in float32, in one GEMM."""
    out = quack_gemm_dgelu_dbias(grad_out, weight, preact)
    return out["D"], out["dwb"]


@quack_dgelu_dbias.register_fake
def _(grad_out, weight, preact):
    return torch.empty_like(preact), preact.new_empty(preact.size(-1), dtype=torch.float32)


class QuackGeluMLP(torch.autograd.Function):
    """c_proj(gelu(c_fc(x))) on quack's GEMMs. Forward: c_fc's bias and the GELU in its GEMM's
    epilogue, c_proj's bias in its. Backward: GELU's derivative and c_fc's bias gradient in one
    epilogue, where quack's mlp_func reads the whole (tokens, 4 * n_embd) gradient again to sum it.
    The GELU's output is kept for c_proj's weight gradient, where mlp_func writes it again in the
    backward: one activation of that size more in memory, one write of it less. A model without
    biases gets c_fc's bias gradient computed and dropped. Weights and biases arrive in their own
    dtype, are cast to autocast's, and get gradients in theirs."""

    @staticmethod
    def forward(ctx, x, w_fc, b_fc, w_proj, b_proj, keep_for_backward):
        ctx.param_dtype = w_fc.dtype
        dtype = autocast_dtype(x)
        x, w_fc, w_proj = x.to(dtype), w_fc.to(dtype), w_proj.to(dtype)
        b_fc, b_proj = (None if b is None else b.to(dtype) for b in (b_fc, b_proj))
        with torch.autocast("cuda", enabled=False):
            rows = x.flatten(0, -2)
            preact, postact = quack_gemm_act(rows, w_fc.T, bias=b_fc, activation="gelu_tanh_approx", store_preact=keep_for_backward)
            out = quack_gemm(postact, w_proj.T, bias=b_proj)
        if keep_for_backward:
            ctx.save_for_backward(rows, preact, postact, w_fc, w_proj)
            ctx.has_bias = (b_fc is not None, b_proj is not None)
        return out.view(*x.shape[:-1], out.size(-1))

    @staticmethod
    def backward(ctx, grad_out):
        rows, preact, postact, w_fc, w_proj = ctx.saved_tensors
        with torch.autocast("cuda", enabled=False):
            dout = grad_out.flatten(0, -2).contiguous()
            dpreact, db_fc = quack_dgelu_dbias(dout, w_proj, preact)
            dx = quack_gemm(dpreact, w_fc, dynamic_scheduler=True)
            dw_fc = quack_gemm(dpreact.T, rows, out_dtype=ctx.param_dtype, dynamic_scheduler=True)
            dw_proj = quack_gemm(dout.T, postact, out_dtype=ctx.param_dtype, dynamic_scheduler=True)
        db_fc = db_fc.to(ctx.param_dtype) if ctx.has_bias[0] else None
        db_proj = dout.sum(0, dtype=ctx.param_dtype) if ctx.has_bias[1] else None
        return dx.view(grad_out.shape[:-1] + dx.shape[-1:]), dw_fc, db_fc, dw_proj, db_proj, None


class QuackMLP(TorchMLP):
    """quack's MLP (QuackGeluMLP): each bias, the GELU, its derivative and c_fc's bias gradient in a
    GEMM's epilogue."""

    name = "quack"
    unavailable = staticmethod(quack_unavailable)

    def __call__(self, mlp, x):
        return QuackGeluMLP.apply(x, mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias, torch.is_grad_enabled())


class TorchQKV(FusedKernel):
    """The attention's q, k and v projection as PyTorch's linear layer; the attention rotates q and k."""

    name = "PyTorch"
    rotates = False  # whether q and k come out rotated

    def __call__(self, attn, x):
        return attn.c_attn(x)

    def queries_and_latent(self, attn, x):
        """MLA's projections of x: the queries (B, T, H, qk_dim) and the latent [c_kv ; k_rope]
        before its norm, their rotary dims rotated where rotates says."""
        return attn.queries(x), attn.wkv_a(x)


def rope_pairs_adjacent(t, heads, head_dim, start=0):
    """A weight's or bias's rows, the first heads * head_dim of them in heads, with each head's rows
    from start on (its rotary dims) reordered from RoPE's pairs (j, j + n / 2) to adjacent rows (2j,
    2j + 1), the pairs quack's RoPE epilogue rotates; the rows after the heads (c_attn's v) as they
    are. Attention is the same for q and k whose dims are reordered alike."""
    n = heads * head_dim
    h = t[:n].unflatten(0, (heads, head_dim))
    rotary = h[:, start:].unflatten(1, (2, -1)).transpose(1, 2).flatten(1, 2)
    return torch.cat((torch.cat((h[:, :start], rotary), dim=1).flatten(0, 1), t[n:]))


def rotate_back_epilogue_rope_(grad, cos, sin):
    """The gradient through quack's RoPE epilogue: grad's rotary dims (adjacent pairs, as
    rope_pairs_adjacent orders them; (B, T, H, D) with cos and sin (T, D / 2)) rotated back, in
    place."""
    quack_rotary(grad, cos, sin, interleaved=True, inplace=True, conjugate=True)


def row_positions(B, T, device):
    """Each row's position in its sequence, for B sequences of T rows flattened into one matrix: the
    positions quack's RoPE epilogue rotates by (floats, as its tables are)."""
    return torch.arange(T, device=device, dtype=torch.float32).repeat(B)


# A custom op for the reason of quack_dgelu_dbias's. quack's dense calls take their vectors as
# (batches, length): a rank-1 one would be read as a variable-length batch's.
@torch.library.custom_op("train_gpt2_mod::quack_linear_rope", mutates_args=())
def quack_linear_rope(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], positions: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """x @ weight.T (+ bias), then each pair of adjacent columns (2j, 2j + 1) of row r rotated by
    positions[r] * turns[2j] turns (quack's float-float table: zero leaves a pair as it is), in one
    GEMM."""
    if bias is None:
        return quack_gemm_rope(x, weight.T, pos=positions[None], freq=turns[None])["D"]
    return quack_gemm_rope_bias(x, weight.T, pos=positions[None], freq=turns[None], bias=bias[None])["D"]


@quack_linear_rope.register_fake
def _(x, weight, bias, positions, turns):
    return x.new_empty(x.size(0), weight.size(0))


class QuackRopeQKV(torch.autograd.Function):
    """The packed q, k, v projection of x (B, T, C) with q and k rotated in its GEMM's epilogue, their
    rows in rope_pairs_adjacent's order (weight and bias arrive reordered). Backward: q's and k's
    gradient rotated back in place by quack, then the matmuls and the bias's sum as PyTorch's linear
    layer runs them. Weight and bias are cast to autocast's dtype and get gradients in theirs."""

    @staticmethod
    def forward(ctx, x, weight, bias, inv_freq, cos, sin, heads):
        ctx.param_dtype = weight.dtype
        dtype = autocast_dtype(x)
        B, T, C = x.shape
        rows, weight = x.to(dtype).flatten(0, 1), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        positions = row_positions(B, T, x.device)
        with torch.autocast("cuda", enabled=False):
            out = torch.ops.train_gpt2_mod.quack_linear_rope(rows, weight, bias, positions, quack_rope_turns(inv_freq, 2 * C, C))
        ctx.save_for_backward(rows, weight, cos, sin)
        ctx.heads, ctx.has_bias = heads, bias is not None
        return out.view(B, T, -1)

    @staticmethod
    def backward(ctx, grad):
        rows, weight, cos, sin = ctx.saved_tensors
        B, T, _ = grad.shape
        grad = grad.contiguous()
        # in place: the gradient is the attention kernel's own fresh dqkv, which nothing else reads
        rotate_back_epilogue_rope_(grad.view(B, T, 3 * ctx.heads, -1)[:, :, : 2 * ctx.heads], cos, sin)
        grad = grad.flatten(0, 1)
        dx = (grad @ weight).view(B, T, -1)
        db = grad.sum(0, dtype=ctx.param_dtype) if ctx.has_bias else None
        return dx, (grad.T @ rows).to(ctx.param_dtype), db, None, None, None, None


# The second GEMM accumulates into the first's output in its epilogue, where autograd would add the
# two products in a kernel of its own; a custom op keeps the accumulation in place inside the
# compiled graph. quack's heuristic tiles, not its autotuned ones: at MLA's shapes they ran at
# least as fast (tools/bench_mla_gemms.py), and they are the same in every run.
@torch.library.custom_op("train_gpt2_mod::sum_of_matmuls", mutates_args=())
def sum_of_matmuls(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """a @ b + c @ d by quack, the second GEMM adding its product onto the first's output."""
    out = quack_gemm(a, b, tuned=False)
    quack_gemm_add_inplace(c, d, out, tuned=False)
    return out


@sum_of_matmuls.register_fake
def _(a, b, c, d):
    return a.new_empty(a.size(0), b.size(1))


class QuackRopeQueriesLatent(torch.autograd.Function):
    """MLA's queries and latent [c_kv ; k_rope] from x (B, T, C) by one quack GEMM on the two weights
    joined, whose epilogue rotates the rotary dims, their rows in rope_pairs_adjacent's order (the
    weights arrive reordered): alone, the latent's few columns fill a GEMM's tiles poorly. Both come
    out as views of its output. Backward: the rotary dims' gradients rotated back in place by quack,
    then x's gradient as one GEMM accumulating onto the other, where autograd would add the two
    after them in a kernel of its own. Weights are cast to autocast's dtype and get gradients in
    theirs."""

    @staticmethod
    def forward(ctx, x, w_q, w_latent, q_turns, latent_turns, cos, sin, heads):
        ctx.param_dtype, ctx.q_width = w_q.dtype, w_q.size(0)
        dtype = autocast_dtype(x)
        B, T, _ = x.shape
        rows, weight = x.to(dtype).flatten(0, 1), torch.cat((w_q, w_latent)).to(dtype)
        with torch.autocast("cuda", enabled=False):
            out = torch.ops.train_gpt2_mod.quack_linear_rope(rows, weight, None, row_positions(B, T, x.device), torch.cat((q_turns, latent_turns)))
        ctx.save_for_backward(rows, weight, cos, sin)
        q, latent = out.split((ctx.q_width, w_latent.size(0)), dim=-1)
        return q.view(B, T, heads, -1), latent.view(B, T, -1)

    @staticmethod
    def backward(ctx, grad_q, grad_latent):
        rows, weight, cos, sin = ctx.saved_tensors
        w_q, w_latent = weight.split((ctx.q_width, weight.size(0) - ctx.q_width))
        B, T = grad_q.shape[:2]  # grad_q (B, T, H, qk_dim)
        rope = 2 * cos.size(-1)
        grad_q, grad_latent = grad_q.to(rows.dtype).contiguous(), grad_latent.to(rows.dtype).contiguous()
        # in place: the gradients are fresh outputs of the attention's and the latent's backward,
        # which nothing else reads; the rotary dims are the last of each query head and of the latent
        rotate_back_epilogue_rope_(grad_q[..., -rope:], cos, sin)
        rotate_back_epilogue_rope_(grad_latent.view(B, T, 1, -1)[..., -rope:], cos, sin)
        grad_q, grad_latent = grad_q.view(B * T, -1), grad_latent.view(B * T, -1)
        dx = torch.ops.train_gpt2_mod.sum_of_matmuls(grad_latent, w_latent, grad_q, w_q)
        return dx.view(B, T, -1), (grad_q.T @ rows).to(ctx.param_dtype), (grad_latent.T @ rows).to(ctx.param_dtype), None, None, None, None, None


class QuackQKV(TorchQKV):
    """q, k and v in one quack GEMM with c_attn's bias and RoPE in its epilogue (QuackRopeQKV): the
    forward's separate RoPE kernel goes; MLA's two projections likewise (QuackRopeQueriesLatent).
    For layers without QK-norm, which comes before RoPE."""

    name = "quack, RoPE in the epilogue"
    rotates = True
    unavailable = staticmethod(quack_unavailable)

    def __call__(self, attn, x):
        c, T = attn.c_attn, x.size(1)
        weight, bias = (None if t is None else rope_pairs_adjacent(t, 2 * attn.n_head, attn.head_dim) for t in (c.weight, c.bias))
        return QuackRopeQKV.apply(x, weight, bias, attn.rotary.inv_freq, attn.rotary.cos[:T], attn.rotary.sin[:T], attn.n_head)

    def queries_and_latent(self, attn, x):
        """Both of MLA's projections of h, rotated, by QuackRopeQueriesLatent; for layers without
        a query latent (q_lora_rank), whose h feeds wq and wkv_a alike."""
        T, rotary = x.size(1), attn.rotary
        turns = quack_rope_turns(rotary.inv_freq, attn.rope)
        w_q = rope_pairs_adjacent(attn.wq.weight, attn.n_head, attn.qk_dim, attn.nope)
        w_latent = rope_pairs_adjacent(attn.wkv_a.weight, 1, attn.kv_rank + attn.rope, attn.kv_rank)
        q_turns, latent_turns = F.pad(turns, (attn.nope, 0)).repeat(attn.n_head), F.pad(turns, (attn.kv_rank, 0))
        return QuackRopeQueriesLatent.apply(x, w_q, w_latent, q_turns, latent_turns, rotary.cos[:T], rotary.sin[:T], attn.n_head)


class TorchAddNorm(FusedKernel):
    """The residual add and the norm after it as PyTorch ops (torch.compile fuses them)."""

    name = "PyTorch"

    def __call__(self, norm, x, branch):
        """x + branch (x alone where branch is None) and its norm."""
        x = x if branch is None else x + branch
        return x, norm(x)


def add_layer_norm_outputs(x, out_dtype):
    """Empty tensors for quack_add_layer_norm's outputs, for the op and its fake."""
    return torch.empty_like(x), torch.empty_like(x, dtype=out_dtype), *(x.new_empty(x.size(0), dtype=torch.float32) for _ in range(2))


def add_layer_norm_backward_outputs(summed, branch_dtype):
    """Empty tensors for quack_add_layer_norm_backward's outputs, for the op and its fake: the
    weight's and bias's partial sums have quack's count of rows."""
    rows = quack_norm_partial_rows(summed.size(-1), summed.device)
    partials = (summed.new_empty(rows, summed.size(-1), dtype=torch.float32) for _ in range(2))
    return torch.empty_like(summed), torch.empty_like(summed, dtype=branch_dtype), *partials


# quack's add-and-norm kernels mutate the tensors they are given; wrapped as functional custom ops
# they trace into the compiled graph as single nodes.
@torch.library.custom_op("train_gpt2_mod::quack_add_layer_norm", mutates_args=())
def quack_add_layer_norm(x: torch.Tensor, branch: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """On rows of x and branch: the sum x + branch in x's dtype, its LayerNorm in out_dtype, and the
    norm's per-row mean and reciprocal standard deviation, in one kernel."""
    summed, out, mean, rstd = add_layer_norm_outputs(x, out_dtype)
    quack_norm_forward(branch, weight, out, bias, rstd, mean, x, summed, LAYER_NORM_EPS, True)
    return summed, out, mean, rstd


@quack_add_layer_norm.register_fake
def _(x, branch, weight, bias, out_dtype):
    return add_layer_norm_outputs(x, out_dtype)


@torch.library.custom_op("train_gpt2_mod::quack_add_layer_norm_backward", mutates_args=())
def quack_add_layer_norm_backward(grad_out: torch.Tensor, grad_sum: Optional[torch.Tensor], summed: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, branch_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradient of the sum (the norm's, plus grad_sum where the sum was used), written twice by
    one kernel: in the sum's dtype for x, in branch_dtype for branch; and the weight's and bias's
    gradients as per-block partial sums (rows, dim) in float32."""
    grad_x, grad_branch, grad_weight, grad_bias = add_layer_norm_backward_outputs(summed, branch_dtype)
    quack_norm_backward(summed, weight, grad_out, rstd, grad_branch, grad_weight, grad_bias, grad_sum, grad_x, grad_weight.size(0), mean=mean, is_layernorm=True)
    return grad_x, grad_branch, grad_weight, grad_bias


@quack_add_layer_norm_backward.register_fake
def _(grad_out, grad_sum, summed, weight, mean, rstd, branch_dtype):
    return add_layer_norm_backward_outputs(summed, branch_dtype)


class QuackAddLayerNorm(torch.autograd.Function):
    """x + branch and its LayerNorm (in autocast's dtype, the matmuls' input) in one quack kernel.
    Backward: the gradient of the sum in x's dtype (the residual stream's) and in branch's (the
    matmuls' input), from one kernel, which saves the cast between them. A model without biases gets
    the bias's gradient computed and dropped."""

    @staticmethod
    def forward(ctx, x, branch, weight, bias):
        shape = x.shape
        x, branch = x.flatten(0, -2).contiguous(), branch.flatten(0, -2).contiguous()
        summed, out, mean, rstd = quack_add_layer_norm(x, branch, weight, bias, autocast_dtype(x))
        ctx.save_for_backward(summed, weight, mean, rstd)
        ctx.branch_dtype, ctx.has_bias = branch.dtype, bias is not None
        return summed.view(shape), out.view(shape)

    @staticmethod
    def backward(ctx, grad_sum, grad_out):
        summed, weight, mean, rstd = ctx.saved_tensors
        shape = grad_out.shape
        grad_sum = None if grad_sum is None else grad_sum.flatten(0, -2).contiguous()
        grad_x, grad_branch, grad_weight, grad_bias = quack_add_layer_norm_backward(grad_out.flatten(0, -2).contiguous(), grad_sum, summed, weight, mean, rstd, ctx.branch_dtype)
        grad_bias = grad_bias.sum(0).to(weight.dtype) if ctx.has_bias else None
        return grad_x.view(shape), grad_branch.view(shape), grad_weight.sum(0).to(weight.dtype), grad_bias


class QuackAddNorm(TorchAddNorm):
    """The residual add and the LayerNorm after it in one quack kernel each way (QuackAddLayerNorm).
    The first block's norm, which follows no add, stays PyTorch's."""

    name = "quack"
    unavailable = staticmethod(quack_unavailable)

    def __call__(self, norm, x, branch):
        if branch is None:
            return super().__call__(norm, x, branch)
        return QuackAddLayerNorm.apply(x, branch, norm.weight, norm.bias)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.kernel = TorchMLP()  # until GPT.set_kernels chooses

    def forward(self, x):
        return self.kernel(self, x)


class Block(nn.Module):
    """Pre-norm block; with post_norm, each sublayer's output is normalized before the residual add."""

    def __init__(self, config, layer_idx):
        super().__init__()
        def norm():
            return Norm(config.n_embd, config.norm_type, config.bias)

        self.ln_1 = norm()
        window = config.sliding_window if is_sliding_window_layer(config, layer_idx) else 0
        self.attn = (MultiHeadLatentAttention if config.use_flash_mla else CausalSelfAttention)(config, window)
        self.ln_2 = norm()
        self.mlp = MLP(config)
        # Identity when off: the baseline's parameters and outputs are untouched
        self.attn_post_norm = norm() if config.post_norm else nn.Identity()
        self.mlp_post_norm = norm() if config.post_norm else nn.Identity()
        self.norm_kernel = TorchAddNorm()  # until GPT.set_kernels chooses

    def forward(self, x, branch=None, cache=None, pos=0):
        """x + branch is the residual stream, branch being the block before's MLP output (None in
        the first block). Returns the stream after attention, and this block's MLP output, which the
        next block or ln_f adds: each add runs with the norm after it (norm_kernel)."""
        x, h = self.norm_kernel(self.ln_1, x, branch)
        x, h = self.norm_kernel(self.ln_2, x, self.attn_post_norm(self.attn(h, cache, pos)))
        return x, self.mlp_post_norm(self.mlp(h))


# -----------------------------------------------------------------------------
# Model

IGNORE_INDEX = -100  # targets not scored (F.cross_entropy's default): val padding, HellaSwag contexts
LOSS_CHUNK_ROWS = 4096  # rows of logits the chunked loss holds at once: 0.4 GB in bf16 at vocab 50304


def loss_chunks(x, targets, dtype):
    """(rows of x in dtype, their targets), LOSS_CHUNK_ROWS rows at a time."""
    return zip(x.to(dtype).split(LOSS_CHUNK_ROWS), targets.split(LOSS_CHUNK_ROWS))


def chunk_loss(x, weight, targets):
    """For one chunk of rows: the logits in fp32, their logsumexp, the scored rows, the targets with
    the ignored ones replaced by 0 (a valid index), and the summed loss of the scored rows."""
    logits = (x @ weight.t()).float()
    lse = logits.logsumexp(dim=-1)
    scored = targets != IGNORE_INDEX
    safe_targets = torch.where(scored, targets, 0)
    target_logit = logits.gather(1, safe_targets[:, None]).squeeze(1)
    return logits, lse, scored, safe_targets, torch.where(scored, lse - target_logit, 0.0).sum()


def chunk_gradients(x, weight, targets, count):
    """For one chunk of rows: its summed loss, the gradient of the mean loss (over count scored rows
    in all) with respect to its logits, and with respect to its rows, taken while its logits are
    at hand."""
    logits, lse, scored, safe_targets, chunk_sum = chunk_loss(x, weight, targets)
    # d(mean loss)/d(logits) = (softmax - one_hot(target)) / count on scored rows, as one
    # elementwise expression (an in-place scatter would cost compiled code another pass)
    one_hot = torch.arange(weight.size(0), device=x.device)[None, :] == safe_targets[:, None]
    grad = (((logits - lse[:, None]).exp() - one_hot.float()) * (scored / count)[:, None]).to(x.dtype)
    return chunk_sum, grad, grad @ weight


class PrecomputedGradients(torch.autograd.Function):
    """loss_sum / count, whose gradients with respect to x and weight were computed along with it:
    backward only scales them."""

    @staticmethod
    def forward(ctx, x, weight, loss_sum, count, grad_x, grad_w):
        ctx.save_for_backward(grad_x, grad_w)
        return loss_sum / count

    @staticmethod
    def backward(ctx, grad_loss):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_loss, grad_w * grad_loss, None, None, None, None


# Under torch.compile the chunks must stay out of the model's graph: inside it, inductor computes
# every chunk's logits before consuming any (d12 at 32 x 1024: all 3.1 GiB of them live at once).
# recursive=False leaves the functions called here to torch.compile, so each chunk's step still
# compiles, as a graph of its own; the chunks run one after another.
@torch.compiler.disable(recursive=False)
def chunked_cross_entropy(x, weight, targets):
    """Mean cross-entropy of the logits x @ weight.T (x: (N, C), targets: (N,)), computed
    LOSS_CHUNK_ROWS rows at a time so that the whole batch's logits never exist (B*T x vocab: 3.3 GB
    in bf16 at B=32, T=1024). The arithmetic is that of lm_head under autocast followed by
    F.cross_entropy: matmuls in autocast's dtype when autocast is on, softmax in fp32."""
    dtype = autocast_dtype(x)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    with torch.no_grad():  # the gradients are taken by hand, chunk by chunk
        w = weight.to(dtype)
        count = (targets != IGNORE_INDEX).sum()
        if not needs_grad:
            return sum(chunk_loss(xc, w, tc)[-1] for xc, tc in loss_chunks(x, targets, dtype)) / count
        # the weight's gradient is summed in one buffer of the compute dtype, in the epilogue of
        # each chunk's matmul (addmm_): no buffer per chunk, no extra pass (docs/PERFORMANCE.md)
        sums, grad_x, grad_w = [], [], torch.zeros_like(w)
        for xc, tc in loss_chunks(x, targets, dtype):
            chunk_sum, grad_logits, chunk_grad_x = chunk_gradients(xc, w, tc, count)
            sums.append(chunk_sum)
            grad_x.append(chunk_grad_x)
            grad_w.addmm_(grad_logits.t(), xc)
            del grad_logits  # freed before the next chunk's logits exist
        loss_sum, grad_x, grad_w = sum(sums), torch.cat(grad_x).to(x.dtype), grad_w.to(weight.dtype)
    return PrecomputedGradients.apply(x, weight, loss_sum, count, grad_x, grad_w)


class ChunkedCrossEntropy(FusedKernel):
    """The loss as PyTorch ops: chunked_cross_entropy."""

    name = "chunked PyTorch"

    def __call__(self, x, weight, targets):
        return chunked_cross_entropy(x, weight, targets)


class QuackLinearCrossEntropy(ChunkedCrossEntropy):
    """quack's fused linear cross-entropy: the head matmul, the softmax and both gradients in a few
    fused kernels, chunk by chunk, the weight's gradient summed in fp32."""

    name = "quack linear-CE"
    unavailable = staticmethod(quack_unavailable)

    def __call__(self, x, weight, targets):
        return quack_cross_entropy(x, weight, targets)


@torch.compiler.disable  # outside the model's graph, as the chunked loss: quack's no-grad path does not trace
def quack_cross_entropy(x, weight, targets):
    return quack_linear_cross_entropy(x, weight, targets, chunk_size=LOSS_CHUNK_ROWS, ignore_index=IGNORE_INDEX)


# The MLP, loss, q, k, v projection and add-and-norm kernels each --kernels may run, in order of
# preference, as KERNEL_CHOICES does for attention; "pytorch" keeps PyTorch's own ops (and, with
# --attn_backend auto, its attention).
FUSED_CHOICES = {
    "auto": {"mlp": (QuackMLP, TorchMLP), "loss": (QuackLinearCrossEntropy, ChunkedCrossEntropy), "qkv": (QuackQKV, TorchQKV), "norm": (QuackAddNorm, TorchAddNorm)},
    "pytorch": {"mlp": (TorchMLP,), "loss": (ChunkedCrossEntropy,), "qkv": (TorchQKV,), "norm": (TorchAddNorm,)},
}


def choose_fused(part, kernels, device, dtype):
    """The first of --kernels' choices for part ("mlp", "loss", "qkv" or "norm") that runs on this device and dtype."""
    return next(k() for k in FUSED_CHOICES[kernels][part] if k.unavailable(device.type, device_capability(device), dtype) is None)


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=Norm(config.n_embd, config.norm_type, config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2
        self.loss_kernel = ChunkedCrossEntropy()  # until set_kernels chooses
        self.norm_kernel = TorchAddNorm()  # ln_f's, after the last block's add
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled so the residual stream's variance does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self):
        """Parameter count, the tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len):
        """Training FLOPs per token (PaLM appendix B): 6N for the weights, plus 6 * heads * (qk + v
        head dims) * context per layer for the attention scores and their use (12 * width * T for
        GPT-2), the context of a sliding-window layer being its window."""
        attention = 0
        for block in self.transformer.h:
            a = block.attn
            attention += 6 * a.n_head * (a.qk_dim + a.v_dim) * min(a.window or seq_len, seq_len)
        return 6 * self.num_params() + attention

    def set_kernels(self, attn_backend, device, dtype, kernels="auto"):
        """Choose every layer's kernels once, for this device and (autocast) dtype: attention for
        attn_backend (place_attention; PyTorch's own under kernels "pytorch" when attn_backend is
        "auto"), the MLP, the loss, the q, k, v projection and the residual add with its norm for
        kernels. Returns the model."""
        device = torch.device(device)
        attn_backend = "sdpa" if kernels == "pytorch" and attn_backend == "auto" else attn_backend
        mlp_kernel = choose_fused("mlp", kernels, device, dtype)  # stateless: one serves every layer
        qkv_kernel = choose_fused("qkv", kernels, device, dtype)
        # quack's add-and-norm kernel runs LayerNorm only: RMSNorm configs keep PyTorch's
        self.norm_kernel = choose_fused("norm", kernels, device, dtype) if self.config.norm_type == "layernorm" else TorchAddNorm()
        for block in self.transformer.h:
            place_attention(block.attn, attn_backend, device, dtype)
            block.mlp.kernel, block.norm_kernel = mlp_kernel, self.norm_kernel
            # QK-norm comes between the projection and RoPE; a query latent (q_lora_rank) between h
            # and MLA's query projection
            projection_can_rotate = block.attn.qk_norm is None and not hasattr(block.attn, "wq_a")
            block.attn.qkv_kernel = qkv_kernel if projection_can_rotate else TorchQKV()
        self.loss_kernel = choose_fused("loss", kernels, device, dtype)
        return self

    def new_kv_caches(self, batch_size, max_len, device):
        """One KV cache per layer for generate(), each a dict of (B, max_len, ...) fp32 buffers."""
        return [{name: torch.zeros(batch_size, max_len, *shape, device=device) for name, shape in block.attn.cache_shapes().items()} for block in self.transformer.h]

    def forward(self, idx, targets=None, caches=None, pos=0, return_logits=True):
        """Logits (of the last position only when targets is None) and the mean loss over the targets
        that are not IGNORE_INDEX. return_logits=False (training, validation) returns no logits and
        takes the loss chunk by chunk, which saves the memory and time of the whole batch's logits;
        the loss is the same. With caches (from new_kv_caches), idx holds the tokens at positions
        pos, pos + 1, ... and the caches grow."""
        x, branch = self.transformer.wte(idx), None
        for i, block in enumerate(self.transformer.h):
            x, branch = block(x, branch, caches[i] if caches is not None else None, pos)
        _, x = self.norm_kernel(self.transformer.ln_f, x, branch)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        if not return_logits:
            return None, self.loss_kernel(x.flatten(0, 1), self.lm_head.weight, targets.flatten())
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=IGNORE_INDEX)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True, generator=None):
        """Append max_new_tokens sampled tokens to idx (B, T); top_k=1 is greedy. use_cache keeps a KV
        cache (for MLA the latent and the shared rotary key only); without it every step recomputes
        the context, cropped to block_size, so it can run past block_size."""
        caches, pos = None, 0
        if use_cache:
            if idx.size(1) + max_new_tokens > self.config.block_size:
                raise ValueError(f"prompt ({idx.size(1)}) + max_new_tokens ({max_new_tokens}) exceed block_size {self.config.block_size}; use_cache=False crops the context instead")
            caches = self.new_kv_caches(idx.size(0), idx.size(1) + max_new_tokens, idx.device)
        for _ in range(max_new_tokens):
            if caches is None:
                logits, _ = self(idx[:, -self.config.block_size :])
            else:
                logits, _ = self(idx[:, pos:], caches=caches, pos=pos)
                pos = idx.size(1)
            logits = logits[:, -1, :GPT2_VOCAB_SIZE].float() / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_token = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            idx = torch.cat((idx, next_token), dim=1)
        return idx


# -----------------------------------------------------------------------------
# Data: llm.c shards (256 int32 header: magic, version, token count; then uint16 tokens)

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_BYTES = 256 * 4


def write_shard(path, tokens):
    """Write tokens as an llm.c shard, atomically (a crash leaves no half-written file)."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise ValueError("shard tokens must fit in uint16")
    header = np.zeros(256, dtype=np.int32)
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, tokens.size)
    with atomic_write(path) as f:
        f.write(header.tobytes())
        f.write(tokens.astype(np.uint16).tobytes())


def shard_token_count(path):
    """Check a shard's header and size; return its token count."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(SHARD_HEADER_BYTES)
    except OSError as e:
        raise UsageError(f"cannot read shard {path}: {e.strerror}") from e
    if len(raw) < SHARD_HEADER_BYTES:
        raise UsageError(f"{path} is not an llm.c shard: {size} bytes, shorter than the {SHARD_HEADER_BYTES}-byte header")
    magic, version, ntok = np.frombuffer(raw, dtype=np.int32)[:3]
    if magic != SHARD_MAGIC:
        raise UsageError(f"{path} is not an llm.c shard: magic number {magic}, expected {SHARD_MAGIC}")
    if version != SHARD_VERSION:
        raise UsageError(f"{path}: shard version {version} is not supported (expected {SHARD_VERSION})")
    expected = SHARD_HEADER_BYTES + 2 * int(ntok)
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        raise UsageError(f"{path} is {what}: the header says {ntok} tokens ({expected} bytes), the file has {size} bytes")
    return int(ntok)


def read_shard(path):
    return np.memmap(path, dtype=np.uint16, mode="r", offset=SHARD_HEADER_BYTES, shape=(shard_token_count(path),))


def check_token_ids(tokens, path, vocab_size):
    """tokens (read from path), if they are all ids the model's embedding has."""
    if vocab_size is not None and tokens.size and int(tokens.max()) >= vocab_size:
        raise UsageError(f"{path} holds token id {int(tokens.max())}, beyond the model's vocab_size {vocab_size}: it was not made with GPT-2's tokenizer")
    return tokens


def find_shards(pattern, flag):
    files = sorted(glob.glob(pattern))
    if not files:
        raise UsageError(f"{flag} {pattern!r} matches no file")
    return files


class DistributedTokenLoader:
    """Batches from a list of shards, in order, cycling when they run out.

    Each step takes world_size * B * T consecutive tokens; rank r reads the r-th contiguous slice
    of B * T (+1 for the targets). The position (shard, offset) is the same on every rank and is
    saved in checkpoints, so a resumed run reads exactly what the uninterrupted run would have.
    A shard too short for one step (the remainder at the end of a dataset) is skipped.
    """

    def __init__(self, files, B, T, rank, world_size, vocab_size=None):
        self.B, self.T, self.rank, self.world_size, self.vocab_size = B, T, rank, world_size, vocab_size
        self.step_tokens = B * T * world_size
        counts = {path: shard_token_count(path) for path in files}
        self.files = [path for path in files if counts[path] >= self.step_tokens + 1]
        need = f"batch_size * sequence_length * world_size + 1 = {self.step_tokens + 1}"
        if not self.files:
            raise UsageError(f"no shard is long enough: each of the {len(files)} has fewer than one step needs ({need}): lower --batch_size or --sequence_length")
        if rank == 0:
            for path in files:
                if path not in self.files:
                    print(f"note: skipping {path}: {counts[path]} tokens, fewer than one step needs ({need})")
        self.open(0, 0)

    def open(self, shard, position):
        self.shard, self.position = shard % len(self.files), position
        self.tokens = check_token_ids(read_shard(self.files[self.shard]), self.files[self.shard], self.vocab_size)

    def state_dict(self):
        return {"shard": self.shard, "position": self.position}

    def load_state_dict(self, state):
        """The position a checkpoint saved; refused where today's shards do not hold it."""
        shard, position = state["shard"], state["position"]
        if shard >= len(self.files) or position + self.step_tokens + 1 > shard_token_count(self.files[shard]):
            raise UsageError(
                f"the checkpoint's data position (shard {shard}, token {position:,}) is not in the {len(self.files)} usable shards "
                "of --input_bin at this batch size: resume with the first run's --input_bin, --batch_size and --sequence_length"
            )
        self.open(shard, position)

    def next_batch(self):
        start = self.position + self.rank * self.B * self.T
        buf = torch.from_numpy(self.tokens[start : start + self.B * self.T + 1].astype(np.int64))
        x, y = buf[:-1].view(self.B, self.T), buf[1:].view(self.B, self.T)
        self.position += self.step_tokens
        if self.position + self.step_tokens + 1 > len(self.tokens):
            self.open(self.shard + 1, 0)
        return x, y


def read_val_tokens(files, max_tokens, vocab_size=None):
    """The first max_tokens tokens of the val shards, concatenated (or all of them, if fewer)."""
    parts, total = [], 0
    for path in files:
        part = check_token_ids(read_shard(path)[: max_tokens - total], path, vocab_size)  # only what is scored
        parts.append(np.asarray(part))
        total += part.size
        if total >= max_tokens:
            break
    return np.concatenate(parts)


# -----------------------------------------------------------------------------
# Optimizer and schedule


def make_optimizer(model, learning_rate, weight_decay, device_type):
    """AdamW; weight decay on matrices and embeddings only, never on norms or biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # fused needs device_type "cuda" (not "cuda:N": that silently turns it off in llm.c)
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.95), eps=1e-8, fused=device_type == "cuda")


def learning_rate_at(step, args):
    """The rate of step (0-based): linear warmup, then cosine decay (or, with --warmdown_iters,
    constant then linear decay) towards learning_rate * learning_rate_decay_frac, reached just after
    the last step, as in llm.c: every trained step has a positive rate."""
    lr, min_lr = args.learning_rate, args.learning_rate * args.learning_rate_decay_frac
    if step < args.warmup_iters:
        return lr * (step + 1) / args.warmup_iters
    if args.warmdown_iters > 0:
        warmdown_start = args.num_iterations - args.warmdown_iters
        if step < warmdown_start:
            return lr
        return lr + (min_lr - lr) * (step - warmdown_start) / args.warmdown_iters
    progress = (step - args.warmup_iters) / max(1, args.num_iterations - args.warmup_iters)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0)))


# -----------------------------------------------------------------------------
# Checkpointing

CHECKPOINT_RE = re.compile(r"^ckpt_(\d+)\.pt$")


def checkpoint_path(output_dir, step):
    return Path(output_dir) / f"ckpt_{step:06d}.pt"


def list_checkpoints(output_dir):
    """Completed checkpoints in output_dir, oldest first (temporary files are skipped)."""
    found = []
    if Path(output_dir).is_dir():
        for p in Path(output_dir).iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def rng_states():
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states):
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def save_checkpoint(path, model, optimizer, step, train_time, loader, config, args, tokens_per_step, tokens):
    """Written through atomic_write: a crash, an interrupt or a full disk never leaves a half-written
    checkpoint or a partial temporary file."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,  # optimizer steps completed
        "train_time_s": train_time,
        "loader": loader.state_dict(),
        "rng": rng_states(),
        "config": dataclasses.asdict(config),
        "args": vars(args),
        "tokens_per_step": tokens_per_step,
        "tokens": tokens,  # trained on through step, whatever the tokens per step were on the way
    }
    with atomic_write(path) as f:
        torch.save(state, f)


# weights_only loading runs no code from the file; beyond tensors and plain Python values, a
# checkpoint holds only numpy's RNG state (an array of uint32), which these rebuild
_np_core = np._core if hasattr(np, "_core") else np.core
CHECKPOINT_SAFE_GLOBALS = [_np_core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint(path):
    """A checkpoint written by this trainer, loaded without running any code from the file."""
    try:
        with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
            # mmap: the ranks of a node share the file's pages instead of each holding a copy
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(checkpoint, dict) or not {"model", "config", "step"} <= checkpoint.keys():
            raise ValueError("it holds no model, config and step")
    except Exception as e:
        if Path(path).stat().st_size == 0:
            reason = "the file is empty"
        elif not zipfile.is_zipfile(path):
            reason = "not a PyTorch file: a truncated copy or another kind of file"
        elif isinstance(e, pickle.UnpicklingError):
            reason = "it holds Python objects beyond tensors and plain values, and loading them could run code"
        else:
            reason = str(e).splitlines()[0][:200]
        older = [p for p in list_checkpoints(Path(path).parent) if p.name < Path(path).name]
        hint = f"; the one before it, {older[-1]}, can be resumed with --resume_from {older[-1]}" if older else ""
        raise UsageError(f"{path} is not a readable checkpoint of this trainer ({reason}){hint}") from e
    return checkpoint


def config_from_checkpoint(checkpoint):
    """The model config a checkpoint was trained with. Checkpoints of 1.4.x also hold attn_backend,
    a run flag since 1.5.0 that does not change the weights."""
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    return GPTConfig(**{k: v for k, v in checkpoint["config"].items() if k in fields})


def resolve_resume_path(resume_from, output_dir, flag="--resume_from"):
    """The checkpoint file that flag's value names: a path, or 'latest' in output_dir."""
    if resume_from == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise UsageError(f"{flag} latest: no checkpoint (ckpt_*.pt) in {output_dir}")
        return found[-1]
    if Path(resume_from).is_dir():
        raise UsageError(f"{flag} {resume_from}: is a folder, not a checkpoint: give its ckpt_*.pt file, or latest with --output_dir {resume_from}")
    if not Path(resume_from).is_file():
        raise UsageError(f"{flag} {resume_from}: no such file")
    return Path(resume_from)


def resume_hint(output_dir):
    """What to run next after a run stopped early."""
    found = list_checkpoints(output_dir)
    if not found:
        return "no checkpoint was saved, so there is nothing to resume"
    return f"to go on, resume with --resume_from latest ({found[-1]})"


# Flags that change what the model learns from a checkpoint on (the others change only what is
# logged, saved or evaluated); a resume under other values says so
TRAINING_FLAGS = (
    "input_bin", "batch_size", "sequence_length", "total_batch_size", "grad_accumulation_steps", "num_iterations",
    "learning_rate", "warmup_iters", "learning_rate_decay_frac", "warmdown_iters", "weight_decay", "grad_clip", "dtype",
)


def changed_training_flags(checkpoint, args, tokens_per_step):
    """'--flag old -> new' for each training flag (and the tokens per step) that differs from the
    checkpoint's run."""
    saved = checkpoint.get("args", {})
    changes = [f"--{name} {saved[name]} -> {getattr(args, name)}" for name in TRAINING_FLAGS if name in saved and saved[name] != getattr(args, name)]
    if checkpoint.get("tokens_per_step", tokens_per_step) != tokens_per_step:
        changes.append(f"tokens per step {checkpoint['tokens_per_step']:,} -> {tokens_per_step:,}")
    return changes


_output_dir_lock = None  # the descriptor holding this process's lock on its --output_dir


def release_output_dir():
    global _output_dir_lock
    if _output_dir_lock is not None:
        os.close(_output_dir_lock)
        _output_dir_lock = None


def claim_output_dir(args):
    """Rank 0, before any work: make --output_dir, lock it until the run ends (a second run there
    is refused; the operating system drops the lock of a killed process), refuse a fresh run where
    another run left files unless --overwrite 1, and remove temporary files a killed run left."""
    global _output_dir_lock
    release_output_dir()  # a process trains one run at a time: an earlier one in it has ended
    out = Path(args.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UsageError(f"cannot write to --output_dir {out}: {e.strerror}") from e
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(lock, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(lock)
        raise UsageError(f"{out} is in use by another run (process {owner}): wait for it to end, or choose another --output_dir") from None
    _output_dir_lock = lock
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)
    for tmp in out.glob("*.tmp"):
        print(f"removing {tmp}, a partial file left by a run that was killed while writing it")
        tmp.unlink()
    if not args.resume_from and not args.overwrite:
        found = [p.name for p in (out / "metrics.jsonl", out / "run.json") if p.exists()] + [p.name for p in list_checkpoints(out)]
        if found:
            raise UsageError(
                f"{out} already holds a run ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}): continue it with "
                "--resume_from latest, write elsewhere with --output_dir, or start over there with --overwrite 1"
            )


def set_aside_later_checkpoints(output_dir, step):
    """Resuming from step k where checkpoints after k exist (a branch from an older checkpoint):
    move them, with the old metrics.jsonl, into a folder of their own, so that --resume_from latest
    and metrics.jsonl follow the new timeline and nothing of the old one is lost."""
    later = [p for p in list_checkpoints(output_dir) if int(CHECKPOINT_RE.match(p.name).group(1)) > step]
    if not later:
        return
    aside = Path(output_dir) / f"superseded_{time.strftime('%Y%m%d-%H%M%S')}_after_step_{step}"
    aside.mkdir()
    for path in later:
        path.rename(aside / path.name)
    metrics = Path(output_dir) / "metrics.jsonl"
    if metrics.exists():
        shutil.copy2(metrics, aside / metrics.name)
    print(f"resuming at step {step}: moved {len(later)} later checkpoints of the old timeline and its metrics.jsonl to {aside}")


# -----------------------------------------------------------------------------
# Logging and tokenizer

# Dense bf16 tensor-core peaks (FLOP/s) by device name, for MFU; an unknown GPU gets no MFU.
GPU_PEAK_BF16_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989.5e12),
    ("H200", 989.5e12),
    ("GH200", 989.5e12),
    ("A100", 312e12),
    ("A10G", 70e12),
    ("L4", 121e12),
    ("L40S", 362e12),
    ("RTX 4090", 165.2e12),
    ("RTX 3090", 71e12),
)


def device_name(device):
    """What run.json and the benchmarks call the device: the GPU's name, or cpu."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def gpu_peak_flops(device_name):
    for key, peak in GPU_PEAK_BF16_FLOPS:
        if key in device_name:
            return peak
    return None


def write_json_atomic(path, obj):
    with atomic_write(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def json_line(record):
    """One line of strict JSON: a non-finite number (a diverged loss) becomes null, never NaN."""
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(finite, allow_nan=False) + "\n"


def read_metrics_lines(path):
    """(line, record) for each line of a metrics.jsonl; a torn last line (the disk filled up, the
    machine died mid-write) is dropped with a warning, a damaged line elsewhere is an error."""
    lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    parsed = []
    for n, line in enumerate(lines, 1):
        try:
            parsed.append((line, json.loads(line)))
        except json.JSONDecodeError:
            if n < len(lines):
                raise UsageError(f"{path}:{n} is not a JSON record: repair or remove that line, then resume") from None
            print(f"warning: {path}: dropping a torn last line ({line[:40]!r}...)", file=sys.stderr)
    return parsed


class MetricsLog:
    """metrics.jsonl in the output dir: one JSON object per line, written by rank 0.

    "step" counts optimizer steps completed: a train record at step s follows the s-th update, a
    val record at step s scores the model after s updates.
    """

    def __init__(self, path, keep_before_step=None):
        self.path = Path(path)
        kept = []
        if keep_before_step is not None and self.path.exists():
            # resuming from a checkpoint taken after step k: keep what was logged before it was
            # written (train records up to k, val records before k); the resumed run logs the rest again
            def logged_before_checkpoint(record):
                return record["step"] < keep_before_step or ("train_loss" in record and record["step"] == keep_before_step)

            kept = [line for line, record in read_metrics_lines(self.path) if logged_before_checkpoint(record)]
        with atomic_write(self.path, "w") as f:
            f.write("".join(line + "\n" for line in kept))
        # unbuffered: a failed append can be cut back, with no buffer left to write it again later
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def write(self, record):
        """Append one record; an append that fails (a full disk) is cut back to the last whole line."""
        data = json_line(record).encode()
        start = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            if os.write(self.fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            os.ftruncate(self.fd, start)
            raise TrainingStopped(f"cannot append to {self.path}: {e.strerror}") from e

    def close(self):
        os.close(self.fd)


GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def gpt2_encoding():
    """GPT-2's BPE from the rank file bundled in data/ (the same ranks as tiktoken's "gpt2", which
    it downloads and so needs the internet); tiktoken's own download is the fallback."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    rank_file = REPO_DIR / "data" / "gpt2.tiktoken"
    if not rank_file.exists():
        return tiktoken.get_encoding("gpt2")
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(rank_file)),
        special_tokens={"<|endoftext|>": GPT2_EOT},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


# -----------------------------------------------------------------------------
# Training loop


@dataclass
class RunContext:
    """Where this process runs: its rank among world_size processes (local_rank on its node), its
    device, and the autocast dtype with its context."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype
    autocast: object

    @property
    def master(self):
        return self.rank == 0


def precision(dtype_flag, device_type):
    """The autocast dtype (--dtype; '' is bfloat16 on CUDA, float32 elsewhere) and its context; on
    CUDA, fp32 matmuls may also use TF32."""
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_flag or ("bfloat16" if device_type == "cuda" else "float32")]
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dtype, torch.autocast(device_type, dtype=dtype) if dtype != torch.float32 else nullcontext()


def setup_context(args):
    """The RunContext from torchrun's environment (plain python is rank 0 of 1), --device and --dtype."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    device_type = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but PyTorch sees no CUDA GPU")
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", device_id=device if device_type == "cuda" else None)
    return RunContext(rank, local_rank, world_size, device, *precision(args.dtype, device_type))


def shutdown(ctx):
    if ctx.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(value, world_size):
    if world_size > 1:
        dist.all_reduce(value, op=dist.ReduceOp.AVG if value.is_cuda else dist.ReduceOp.SUM)
        if not value.is_cuda:  # gloo has no AVG
            value /= world_size
    return value


@torch.no_grad()
def evaluate(model, val_tokens, args, ctx):
    """Mean loss over every token of the val sequences, whatever the world size and batch size:
    each rank scores a contiguous share, the last batch padded with ignored rows (so every batch
    has one shape for torch.compile), and the sums and counts are all-reduced."""
    T, B = args.sequence_length, args.val_batch_size or args.batch_size
    num_seqs = (len(val_tokens) - 1) // T
    if args.val_max_steps > 0:
        num_seqs = min(num_seqs, args.val_max_steps * B * ctx.world_size)
    lo, hi = ctx.rank * num_seqs // ctx.world_size, (ctx.rank + 1) * num_seqs // ctx.world_size
    model.eval()
    totals = torch.zeros(2, device=ctx.device)  # loss sum, token count
    for first in range(lo, hi, B):
        rows = min(B, hi - first)
        buf = torch.from_numpy(val_tokens[first * T : (first + rows) * T + 1].astype(np.int64))
        x = torch.zeros(B, T, dtype=torch.long)
        y = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
        x[:rows], y[:rows] = buf[:-1].view(rows, T), buf[1:].view(rows, T)
        with ctx.autocast:
            _, loss = model(x.to(ctx.device), y.to(ctx.device), return_logits=False)
        totals += torch.stack((loss.float() * rows * T, torch.tensor(float(rows * T), device=ctx.device)))
    model.train()
    if ctx.world_size > 1:
        dist.all_reduce(totals)
    return (totals[0] / totals[1]).item(), int(totals[1].item())


HELLASWAG_FILE = REPO_DIR / "data" / "hellaswag" / "hellaswag_val.jsonl"


def read_hellaswag(path):
    """HellaSwag examples (jsonl: ctx, 4 endings, label), checked so a bad file fails before training."""
    if not Path(path).exists():
        raise UsageError(f"no HellaSwag file at {path}: download it with python data/hellaswag.py, or set --hellaswag_file")
    examples = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text: not a HellaSwag jsonl file") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
            endings = example["endings"]
            ok = isinstance(example["ctx"], str) and isinstance(endings, list) and len(endings) == 4
            ok = ok and all(isinstance(e, str) for e in endings) and example["label"] in (0, 1, 2, 3)
        except (json.JSONDecodeError, KeyError, TypeError):
            ok = False
        if not ok:
            raise UsageError(f"{path}:{n} is not a HellaSwag example (ctx, 4 endings, all text, label 0-3)")
        examples.append(example)
    if not examples:
        raise UsageError(f"{path} holds no HellaSwag example")
    return examples


@torch.no_grad()
def hellaswag_counts(model, examples, encoding, ctx, max_len):
    """This rank's share of HellaSwag (every world_size-th example), completion style as llm.c scores
    it: the ending after the context (with a leading space) with the lowest loss wins, summed over
    its tokens for acc, averaged for acc_norm. Returns (correct, correct_norm, examples) counts."""
    counts = torch.zeros(3, device=ctx.device)
    model.eval()
    for example in examples[ctx.rank :: ctx.world_size]:
        context = encoding.encode_ordinary(example["ctx"])
        rows, completions = [], []
        for ending in example["endings"]:
            completion = encoding.encode_ordinary(" " + ending)
            rows.append((context + completion)[-(max_len + 1) :])  # the context is cropped, never the ending
            completions.append(min(len(completion), max_len))
        width = max(len(r) for r in rows) - 1
        x = torch.zeros(4, width, dtype=torch.long)
        y = torch.full((4, width), IGNORE_INDEX, dtype=torch.long)  # only completion tokens are scored
        for i, (row, n) in enumerate(zip(rows, completions)):
            x[i, : len(row) - 1] = torch.tensor(row[:-1])
            y[i, len(row) - 1 - n : len(row) - 1] = torch.tensor(row[-n:])
        x, y = x.to(ctx.device), y.to(ctx.device)
        with ctx.autocast:
            logits, _ = model(x, y)
        token_loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(4, width)
        summed = token_loss.sum(dim=1)
        mean = summed / (y != IGNORE_INDEX).sum(dim=1)
        label = example["label"]
        counts += torch.tensor([float(summed.argmin().item() == label), float(mean.argmin().item() == label), 1.0], device=ctx.device)
    model.train()
    return counts


def evaluate_hellaswag(model, examples, encoding, ctx, max_len):
    """(acc, acc_norm, examples scored) over every rank's share."""
    counts = hellaswag_counts(model, examples, encoding, ctx, max_len)
    if ctx.world_size > 1:
        dist.all_reduce(counts)
    correct, correct_norm, total = counts.tolist()
    return correct / total, correct_norm / total, int(total)


def sample_text(model, encoding, ctx, prompt, length, seed, top_k=40, temperature=1.0):
    """The prompt and a sampled continuation of it (from <|endoftext|> when the prompt is empty), as
    text; its own generator leaves the training RNG untouched."""
    generator = torch.Generator(device=ctx.device).manual_seed(seed)
    idx = torch.tensor([encoding.encode_ordinary(prompt) or [GPT2_EOT]], device=ctx.device)
    with ctx.autocast:
        out = model.generate(idx, length, temperature=temperature, top_k=top_k, generator=generator)
    return encoding.decode([t for t in out[0].tolist() if t != GPT2_EOT])


def describe_attention(model):
    """Which attention class runs in which layers, on which kernel: the log line at startup."""
    groups = {}
    for i, block in enumerate(model.transformer.h):
        a = block.attn
        groups.setdefault((type(a).__name__, a.window, a.kernel.name), []).append(i)
    parts = [f"{name}{f' (window {w})' if w else ''} on {kernel} in layers {','.join(map(str, layers))}" for (name, w, kernel), layers in groups.items()]
    return "attention: " + "; ".join(parts)


def describe_kernels(model):
    """The attention line, and which kernels run the q, k, v projections (MLA's of the queries and
    the latent), the residual adds with the norms after them, the MLPs and the loss."""
    blocks = model.transformer.h
    parts = {
        "q, k, v projection": [b.attn.qkv_kernel for b in blocks],
        "add and norm": [model.norm_kernel],
        "MLP": [b.mlp.kernel for b in blocks],
        "loss": [model.loss_kernel],
    }
    return describe_attention(model) + "\n" + "; ".join(f"{part} on {', '.join(dict.fromkeys(k.name for k in kernels))}" for part, kernels in parts.items() if kernels)


def agree_on_errors(setup, ctx):
    """Run setup() on every rank; if it fails on any rank, every rank stops instead of waiting
    forever in the next collective (a file missing on one node only, say)."""
    error = None
    try:
        result = setup()
    except UsageError as e:
        error = e
    if ctx.world_size > 1:
        failed = torch.tensor(int(error is not None), device=ctx.device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        if failed.item() and error is None:
            error = UsageError(f"setup failed on another rank (rank {dist.get_rank()} stops too)")
    if error is not None:
        raise error
    return result


def prepare_run(args, ctx):
    """Everything that can fail on bad input, before any training work: data, checkpoint, output
    dir. Returns the config, the loader, the val tokens, the HellaSwag examples and the checkpoint
    to resume (or None); rank 0 holds the output dir's lock."""
    config = build_config(args)
    with torch.device("meta"):  # a FlashAttention that cannot run here stops the run before any work
        GPT(config).set_kernels(args.attn_backend, ctx.device, ctx.dtype, args.kernels)
    loader = DistributedTokenLoader(find_shards(args.input_bin, "--input_bin"), args.batch_size, args.sequence_length, ctx.rank, ctx.world_size, config.vocab_size)
    val_tokens = load_val_tokens(args, config, ctx.world_size)
    checkpoint = None
    if args.resume_from:
        resume_path = resolve_resume_path(args.resume_from, args.output_dir)
        checkpoint = load_checkpoint(resume_path)
        checkpoint["path"] = resume_path
        saved = config_from_checkpoint(checkpoint)
        if saved != config:
            diff = [f"{k}: checkpoint {v!r}, asked {getattr(config, k)!r}" for k, v in dataclasses.asdict(saved).items() if getattr(config, k) != v]
            raise UsageError(f"{resume_path} was trained with another model config ({'; '.join(diff)}): pass the same --model and overrides")
        if args.num_iterations < checkpoint["step"]:
            raise UsageError(f"--num_iterations {args.num_iterations} is below {resume_path}'s step {checkpoint['step']}: nothing is left to train")
        loader.load_state_dict(checkpoint["loader"])  # a position outside today's --input_bin is refused here
    hellaswag = read_hellaswag(args.hellaswag_file) if args.hellaswag_every else None
    if ctx.master:
        claim_output_dir(args)
    return config, loader, val_tokens, hellaswag, checkpoint


def load_val_tokens(args, config, world_size):
    """The val tokens --input_val_bin and --val_tokens ask for, or None without val data."""
    if not args.input_val_bin:
        return None
    val_tokens = read_val_tokens(find_shards(args.input_val_bin, "--input_val_bin"), args.val_tokens + 1, config.vocab_size)
    if (len(val_tokens) - 1) // args.sequence_length < world_size:
        raise UsageError(f"the val data ({len(val_tokens)} tokens) holds fewer than {world_size} sequences of {args.sequence_length}: lower --sequence_length")
    return val_tokens


RECOMPUTE_MEMORY_BUDGET = 0.85  # for --recompute 1 (docs/PERFORMANCE.md: how it was chosen)


def compile_model(model, recompute, cuda_graphs):
    """torch.compile as the trainer runs it. recompute: the partitioner keeps activations worth at
    most RECOMPUTE_MEMORY_BUDGET of what it would keep, and recomputes the cheapest others in backward.
    cuda_graphs: each compiled graph is replayed as a CUDA graph (mode "reduce-overhead"), so the
    GPU does not wait on Python to launch its kernels one by one."""
    if recompute:
        torch._functorch.config.activation_memory_budget = RECOMPUTE_MEMORY_BUDGET
    return torch.compile(model, dynamic=False, mode="reduce-overhead" if cuda_graphs else None)


def clip_gradients(model, optimizer, max_norm):
    """The gradients' total norm; with max_norm > 0, they are scaled down to at most max_norm.
    Fused AdamW takes the scale as its grad_scale and divides each gradient by it as it reads it,
    which saves a pass over all the gradients."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if max_norm > 0 and optimizer.defaults.get("fused"):
        optimizer.grad_scale = torch.clamp((norm + 1e-6) / max_norm, min=1.0)  # clip_grad_norm_'s coefficient, inverted
    elif max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm


def train_step(train_model, raw_model, optimizer, loader, grad_accum, grad_clip, ctx):
    """One optimizer step over grad_accum micro-batches: forward, backward, clipping, AdamW. Returns
    this rank's mean loss and the grad norm as device tensors, without waiting for the GPU."""
    loss_sum = torch.zeros((), device=ctx.device)
    for micro_step in range(grad_accum):
        x, y = loader.next_batch()
        if ctx.device.type == "cuda":  # a copy from pinned memory does not hold the CPU up while the GPU is busy
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        if ctx.world_size > 1:  # all-reduce gradients only on the last micro-step
            train_model.require_backward_grad_sync = micro_step == grad_accum - 1
        with ctx.autocast:
            _, loss = train_model(x, y, return_logits=False)
        loss_sum += loss.detach()
        (loss / grad_accum).backward()
    grad_norm = clip_gradients(raw_model, optimizer, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / grad_accum, grad_norm


class HostCopy:
    """A device tensor copied to host memory without waiting for the GPU. tolist() then waits only for
    the work queued before the copy; .item() would wait for everything queued since, such as the
    next training step."""

    def __init__(self, tensor):
        self.ready = None
        if tensor.is_cuda:
            self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor, non_blocking=True)
            self.ready = torch.cuda.Event(enable_timing=True)  # also where the GPU ended the step
            self.ready.record()
        else:
            self.host = tensor

    def tolist(self):
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.tolist()


class TrainingRun:
    """The training loop and its state. On CUDA a step's loss is read (which waits for the GPU) only
    once the next step has been launched, so the GPU does not idle while Python launches a step. A
    step's time runs from when it could start (its launch, or the end of the step before) to its end,
    on the GPU's clock where there is one: the host reads a step late, and by then the GPU may have
    run much of the next one. Rank 0 logs and saves."""

    def __init__(self, args, ctx, config, model, optimizer, loader, val_tokens, hellaswag, start_step=0, train_time=0.0, start_tokens=0):
        self.args, self.ctx, self.config, self.raw_model, self.optimizer, self.loader = args, ctx, config, model, optimizer, loader
        self.val_tokens, self.hellaswag = val_tokens, hellaswag
        self.model = compile_model(model, args.recompute, args.cuda_graphs) if args.compile else model  # evaluation runs it too
        self.train_model = self.model
        if ctx.world_size > 1:
            # the rotary tables are buffers computed identically on every rank: no need to broadcast them
            device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids, broadcast_buffers=False)
        self.grad_accum = grad_accumulation_steps(args, ctx.world_size)
        self.tokens_per_step = args.batch_size * args.sequence_length * ctx.world_size * self.grad_accum
        self.flops_per_step = model.flops_per_token(args.sequence_length) * self.tokens_per_step
        self.device_name = device_name(ctx.device)
        self.peak_flops = gpu_peak_flops(self.device_name) if ctx.device.type == "cuda" and ctx.dtype == torch.bfloat16 else None
        self.encoding = gpt2_encoding() if (ctx.master and args.sample_every > 0) or hellaswag else None
        self.start_step, self.start_tokens, self.train_time, self.step_times = start_step, start_tokens, train_time, []
        self.pending, self.last_read = None, 0.0  # the step launched and not yet read; when the last was read
        self.last_end = None  # the event at the end of the last step read (CUDA)
        self.metrics = self.wandb_run = None

    def info(self):
        """run.json's contents (the summary is added at the end)."""
        return {
            "model": self.args.model,
            "config": dataclasses.asdict(self.config),
            "args": vars(self.args),
            "num_params": self.raw_model.num_params(),
            "device": self.device_name,
            "world_size": self.ctx.world_size,
            "dtype": str(self.ctx.dtype).removeprefix("torch."),
            "grad_accumulation_steps": self.grad_accum,
            "tokens_per_step": self.tokens_per_step,
        }

    def open_logs(self, checkpoint):
        """Rank 0: the output dir made ready for this run (old checkpoints cleared under --overwrite,
        a branch's later ones set aside), metrics.jsonl, W&B, and the startup lines."""
        args, config, out = self.args, self.config, Path(self.args.output_dir)
        old = list_checkpoints(out) if checkpoint is None else []
        if old:
            # --overwrite 1: the old run's checkpoints must not be taken for this run's by --resume_from latest
            print(f"--overwrite 1: removing {len(old)} checkpoints of the previous run in {out}")
            for path in old:
                path.unlink()
        if checkpoint is not None:
            set_aside_later_checkpoints(out, self.start_step)
            changes = changed_training_flags(checkpoint, args, self.tokens_per_step)
            if changes:
                print(f"warning: resuming {checkpoint['path']} with training flags that differ from its run's: {', '.join(changes)}; training goes on under the new values", file=sys.stderr)
        if config.sliding_window >= args.sequence_length:
            print(f"note: the sliding window ({config.sliding_window}) holds the whole {args.sequence_length}-token sequence, so every layer attends to all of it: this run trains the same model as without the window")
        self.metrics = MetricsLog(out / "metrics.jsonl", keep_before_step=self.start_step if checkpoint else None)
        if args.log_wandb:
            import wandb

            self.wandb_run = wandb.init(project="train_gpt2_mod", config=self.info(), resume="allow")
        ws = self.ctx.world_size
        print(
            f"model {args.model}: {self.raw_model.num_params():,} parameters ({config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide) | "
            f"{ws} x {self.device_name}, {str(self.ctx.dtype).removeprefix('torch.')} | batch {args.batch_size} x {args.sequence_length} x {ws} ranks x {self.grad_accum} accumulation = {self.tokens_per_step:,} tokens/step"
        )
        print(describe_kernels(self.raw_model))
        if checkpoint:
            print(f"resumed from {checkpoint['path']} at step {self.start_step}")

    def log(self, record, line):
        if self.ctx.master:
            record.update(tokens=self.tokens_at(record["step"]), train_time_s=self.train_time)
            self.metrics.write(record)
            if self.wandb_run is not None:
                self.wandb_run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
            print(line, flush=True)

    def tokens_at(self, step):
        """Tokens trained on through step: the resumed checkpoint's, then this run's tokens per step
        (which a branch may have changed)."""
        return self.start_tokens + (step - self.start_step) * self.tokens_per_step

    def read_pending(self):
        """Wait for the step in flight, log it, and stop on a diverged loss: checked before that
        step's checkpoint is written, so the last checkpoint stays a finite model."""
        if self.pending is None:
            return
        (step, lr, stats, launched, start), self.pending = self.pending, None
        train_loss, norm = stats.tolist()
        now = time.perf_counter()
        if start is None:  # a CPU step has run by the time it is read
            dt = now - max(launched, self.last_read)
        else:
            since = start if launched > self.last_read else self.last_end
            dt, self.last_end = since.elapsed_time(stats.ready) / 1e3, stats.ready
        self.last_read = now
        self.train_time += dt
        self.step_times.append(dt)
        tokens_per_s = self.tokens_per_step / dt
        mfu = self.flops_per_step / dt / self.peak_flops / self.ctx.world_size if self.peak_flops else None
        record = {"step": step, "train_loss": train_loss, "lr": lr, "grad_norm": norm, "step_ms": dt * 1e3, "tokens_per_s": tokens_per_s, "mfu": mfu}
        mfu_text = f" | MFU {100 * mfu:.1f}%" if mfu is not None else ""
        self.log(record, f"step {step:5d}/{self.args.num_iterations} | train loss {train_loss:.4f} | lr {lr:.2e} | grad norm {norm:.3f} | {dt * 1e3:.1f} ms | {tokens_per_s:,.0f} tok/s{mfu_text}")
        if not (math.isfinite(train_loss) and math.isfinite(norm)):
            raise TrainingStopped(f"step {step}: train loss {train_loss}, grad norm {norm}: the run diverged and was stopped before saving it (lower --learning_rate, or clip with --grad_clip)")

    def evaluate_at(self, step):
        """Validation, HellaSwag and a sample where their cadence (or the last step) asks for them;
        the step in flight is read first, so evaluation never counts in a step's time."""
        args, ctx, last = self.args, self.ctx, self.args.num_iterations
        is_last = step == last
        do_val = self.val_tokens is not None and (is_last or (args.val_loss_every > 0 and step % args.val_loss_every == 0))
        do_hellaswag = bool(self.hellaswag) and (is_last or step % args.hellaswag_every == 0)
        sample_now = args.sample_every > 0 and (is_last or step % args.sample_every == 0)
        if is_last or do_val or do_hellaswag or sample_now:
            self.read_pending()
        if do_val:
            val_loss, val_count = evaluate(self.model, self.val_tokens, args, ctx)
            self.log({"step": step, "val_loss": val_loss, "val_tokens": val_count}, f"step {step:5d}/{last} | val loss {val_loss:.4f} ({val_count:,} tokens)")
        if do_hellaswag:
            acc, acc_norm, count = evaluate_hellaswag(self.raw_model, self.hellaswag, self.encoding, ctx, self.config.block_size)
            self.log({"step": step, "hellaswag_acc": acc, "hellaswag_acc_norm": acc_norm, "hellaswag_examples": count}, f"step {step:5d}/{last} | HellaSwag acc_norm {acc_norm:.4f}, acc {acc:.4f} ({count:,} examples)")
        if ctx.master and sample_now:
            text = sample_text(self.raw_model, self.encoding, ctx, "", args.sample_length, args.seed + step)
            print(f"sample at step {step}:\n{text}\n---", flush=True)

    def train_one(self, step):
        """Launch the step that takes the model from step to step + 1 updates, then read the one
        before it (or this one, on a CPU, where it has already run, or before a checkpoint)."""
        launched, start = time.perf_counter(), None
        if self.ctx.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            start.record()
        lr = learning_rate_at(step, self.args)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        mean_loss, grad_norm = train_step(self.train_model, self.raw_model, self.optimizer, self.loader, self.grad_accum, self.args.grad_clip, self.ctx)
        stats = HostCopy(torch.stack((all_reduce_mean(mean_loss, self.ctx.world_size), grad_norm)))
        self.read_pending()
        self.pending = (step + 1, lr, stats, launched, start)
        done = step + 1
        save_now = done == self.args.num_iterations or (self.args.save_every > 0 and done % self.args.save_every == 0)
        if save_now or self.ctx.device.type != "cuda":  # a checkpoint's train time includes its step
            self.read_pending()
        if save_now and self.ctx.master:
            self.save(done)

    def save(self, step):
        path = checkpoint_path(self.args.output_dir, step)
        save_checkpoint(path, self.raw_model, self.optimizer, step, self.train_time, self.loader, self.config, self.args, self.tokens_per_step, self.tokens_at(step))
        print(f"saved {path}", flush=True)
        if self.args.keep_last:
            for old in list_checkpoints(self.args.output_dir)[: -self.args.keep_last]:
                old.unlink()

    def loop(self):
        for step in range(self.start_step, self.args.num_iterations):
            self.evaluate_at(step)
            self.train_one(step)
        self.evaluate_at(self.args.num_iterations)

    def summary(self):
        """Steady-state speed (leaving out the first steps: compilation, allocator warm-up) and peak
        memory, or None where no step was timed."""
        steady = self.step_times[min(len(self.step_times) // 2, 10) :]
        if not steady:
            return None
        median = statistics.median(steady)
        on_cuda = self.ctx.device.type == "cuda"
        return {
            "first_step_s": self.step_times[0],  # compilation and the JIT kernels' first build
            "steady_steps": len(steady),
            "median_step_ms": median * 1e3,
            "tokens_per_s": self.tokens_per_step / median,
            "mfu": self.flops_per_step / median / self.peak_flops / self.ctx.world_size if self.peak_flops else None,
            "peak_memory_gib": torch.cuda.max_memory_allocated(self.ctx.device) / 2**30 if on_cuda else None,
            # what the process held from the GPU: the allocator's cache, and CUDA graphs' memory pools
            "peak_reserved_gib": torch.cuda.max_memory_reserved(self.ctx.device) / 2**30 if on_cuda else None,
        }

    def close(self):
        """Rank 0: the summary line, run.json, and the logs closed."""
        run_info, summary = self.info(), self.summary()
        run_json = Path(self.args.output_dir) / "run.json"
        if summary is not None:
            run_info["summary"] = summary
            mem = f", peak memory {summary['peak_memory_gib']:.2f} GiB" if summary["peak_memory_gib"] is not None else ""
            mfu_text = f", MFU {100 * summary['mfu']:.1f}%" if summary["mfu"] is not None else ""
            print(f"steady state ({summary['steady_steps']} steps): {summary['median_step_ms']:.1f} ms/step, {summary['tokens_per_s']:,.0f} tok/s{mfu_text}{mem}")
        elif self.start_step and run_json.exists():
            # a resume that trained no step (the run had finished) keeps the summary measured before
            previous = json.loads(run_json.read_text()).get("summary")
            if previous:
                run_info["summary"] = previous
        write_json_atomic(run_json, run_info)
        self.metrics.close()
        release_output_dir()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def build_model(args, ctx, config):
    """The model, seeded, on its device with its attention kernels, and its optimizer."""
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    model = GPT(config).to(ctx.device).set_kernels(args.attn_backend, ctx.device, ctx.dtype, args.kernels)
    return model, make_optimizer(model, args.learning_rate, args.weight_decay, ctx.device.type)


def restore(checkpoint, model, optimizer):
    """The model, the optimizer and the RNGs as the checkpoint saved them; returns its step, train
    time and tokens trained on (for checkpoints before 1.8.1, which did not count them: the steps at
    their run's tokens per step)."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    set_rng_states(checkpoint["rng"])
    tokens = checkpoint.get("tokens", checkpoint["step"] * checkpoint["tokens_per_step"])
    return checkpoint["step"], checkpoint["train_time_s"], tokens


def train(args):
    ctx = setup_context(args)
    config, loader, val_tokens, hellaswag, checkpoint = agree_on_errors(lambda: prepare_run(args, ctx), ctx)
    model, optimizer = build_model(args, ctx, config)
    start = restore(checkpoint, model, optimizer) if checkpoint is not None else (0, 0.0, 0)
    run = TrainingRun(args, ctx, config, model, optimizer, loader, val_tokens, hellaswag, *start)
    if ctx.master:
        run.open_logs(checkpoint)
    del checkpoint  # its pages can go
    run.loop()
    if ctx.master:
        run.close()
    shutdown(ctx)


# -----------------------------------------------------------------------------
# Command line


def finite_float(text):
    """A float flag's value: a NaN or infinite one would only show later, as a diverged run."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # not a number at all: the same message
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
    return value


def parse_bool(text):
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, not {text!r}")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default in its help, except where there is none to show (the model overrides)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser():
    p = argparse.ArgumentParser(description="GPT-2 pretraining in one file.", formatter_class=HelpFormatter, allow_abbrev=False)
    shakespeare = REPO_DIR / "data" / "shakespeare"
    p.add_argument("--input_bin", default=str(shakespeare / "shakespeare_train_*.bin"), help="glob of training shards")
    p.add_argument("--input_val_bin", default=str(shakespeare / "shakespeare_val_*.bin"), help="glob of val shards ('' for no validation)")
    p.add_argument("--output_dir", default="out", help="where metrics.jsonl, run.json and checkpoints go")
    p.add_argument("--overwrite", type=int, default=0, choices=[0, 1], help="1: start a new run in an output_dir that already holds one")
    p.add_argument("--model", default="d12", help=f"named config: {', '.join(MODEL_CONFIGS)}")
    p.add_argument("--batch_size", type=int, default=32, help="micro-batch size per rank, in sequences")
    p.add_argument("--sequence_length", type=int, default=1024, help="tokens per sequence (at most block_size)")
    p.add_argument("--total_batch_size", type=int, default=0, help="tokens per optimizer step; sets gradient accumulation (0: one micro-batch per rank)")
    p.add_argument("--grad_accumulation_steps", type=int, default=0, help="micro-batches per optimizer step (0: from --total_batch_size)")
    p.add_argument("--num_iterations", type=int, default=1000, help="optimizer steps")
    p.add_argument("--learning_rate", type=finite_float, default=6e-4, help="peak learning rate")
    p.add_argument("--warmup_iters", type=int, default=100, help="steps of linear warmup")
    p.add_argument("--learning_rate_decay_frac", type=finite_float, default=0.0, help="final learning rate as a fraction of the peak")
    p.add_argument("--warmdown_iters", type=int, default=0, help=">0: trapezoidal schedule, decaying linearly over the last N steps (else cosine)")
    p.add_argument("--weight_decay", type=finite_float, default=0.1, help="AdamW weight decay on matrices and embeddings")
    p.add_argument("--grad_clip", type=finite_float, default=1.0, help="gradient norm clip (0: off)")
    p.add_argument("--val_loss_every", type=int, default=250, help="validate every N steps (0: only at the end)")
    p.add_argument("--val_tokens", type=int, default=10_485_760, help="val tokens to score (the standard FineWeb val: 10,485,760), or all the val data if fewer")
    p.add_argument("--val_max_steps", type=int, default=0, help=">0: at most N val batches per rank (quick checks)")
    p.add_argument("--val_batch_size", type=int, default=0, help="val micro-batch size (0: --batch_size)")
    p.add_argument("--sample_every", type=int, default=0, help="print a text sample every N steps and at the end (0: never)")
    p.add_argument("--sample_length", type=int, default=64, help="tokens per sample")
    p.add_argument("--sample_from", default="", help="only sample: a checkpoint (or 'latest' in --output_dir) to continue --prompt from")
    p.add_argument("--prompt", default="", help="with --sample_from: the text to continue ('': from <|endoftext|>)")
    p.add_argument("--top_k", type=int, default=40, help="with --sample_from: sample from the k most likely tokens (0: all)")
    p.add_argument("--temperature", type=finite_float, default=1.0, help="with --sample_from: softmax temperature")
    p.add_argument("--save_every", type=int, default=0, help="checkpoint every N steps (always at the end)")
    p.add_argument("--keep_last", type=int, default=0, help=">0: keep only the newest N checkpoints in --output_dir (0: keep all)")
    p.add_argument("--resume_from", default="", help="checkpoint to continue from, or 'latest' in --output_dir")
    p.add_argument("--compile", type=int, default=0, choices=[0, 1], help="1: torch.compile the model")
    p.add_argument("--attn_backend", default="auto", choices=list(KERNEL_CHOICES), help="attention kernels: auto (the fastest measured that runs here), flash_attn (the flash-attn package, or an error), sdpa (PyTorch's)")
    p.add_argument("--kernels", default="auto", choices=list(FUSED_CHOICES), help="MLP, loss, q, k, v projection and add-and-norm kernels: auto (quack's fused ones on Hopper and newer in bf16 where installed), pytorch (PyTorch's own, for attention too under --attn_backend auto)")
    p.add_argument("--cuda_graphs", type=int, default=0, choices=[0, 1], help="1 (with --compile 1, one GPU, no gradient accumulation): replay the compiled model as CUDA graphs, so the GPU does not wait on Python's kernel launches")
    p.add_argument("--recompute", type=int, default=0, choices=[0, 1], help="1 (with --compile 1): keep fewer activations for backward and recompute the rest (less memory, a little slower: README.md has the figures)")
    p.add_argument("--dtype", default="", choices=["", "float32", "bfloat16"], help="autocast dtype ('': bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--device", default="", choices=["", "cpu", "cuda"], help="'': CUDA when available")
    p.add_argument("--seed", type=int, default=1337, help="seed for initialization")
    p.add_argument("--log_wandb", type=int, default=0, choices=[0, 1], help="1: also log to Weights & Biases")
    p.add_argument("--hellaswag_every", type=int, default=0, help="HellaSwag accuracy every N steps and at the end (0: never)")
    p.add_argument("--hellaswag_file", default=str(HELLASWAG_FILE), help="HellaSwag val jsonl (python data/hellaswag.py fetches it)")
    p.add_argument("--eval_only", type=int, default=0, choices=[0, 1], help="1: only evaluate --resume_from's checkpoint (val loss and HellaSwag), then exit")
    overrides = p.add_argument_group("model config overrides (GPTConfig fields; see their declaration)")
    for field in dataclasses.fields(GPTConfig):
        kind = {bool: parse_bool, float: finite_float}.get(field.type, field.type)
        overrides.add_argument(f"--{field.name}", type=kind, default=None, help="(default: from --model)")
    return p


def build_config(args):
    if args.model not in MODEL_CONFIGS:
        raise UsageError(f"unknown model {args.model!r}; valid names: {', '.join(MODEL_CONFIGS)}")
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(GPTConfig) if getattr(args, f.name) is not None}
    config = dataclasses.replace(MODEL_CONFIGS[args.model], **changes)
    config.validate()
    return config


def grad_accumulation_steps(args, world_size):
    micro_tokens = args.batch_size * args.sequence_length * world_size
    if args.grad_accumulation_steps > 0:
        if args.total_batch_size and args.total_batch_size != micro_tokens * args.grad_accumulation_steps:
            raise UsageError(
                f"--total_batch_size {args.total_batch_size} disagrees with batch_size * sequence_length * world_size * "
                f"grad_accumulation_steps = {micro_tokens * args.grad_accumulation_steps}: give one of the two"
            )
        return args.grad_accumulation_steps
    if args.total_batch_size <= 0:
        return 1
    if args.total_batch_size % micro_tokens:
        raise UsageError(
            f"--total_batch_size {args.total_batch_size} is not a multiple of batch_size * sequence_length * world_size = "
            f"{args.batch_size} * {args.sequence_length} * {world_size} = {micro_tokens}: use a multiple of {micro_tokens}"
        )
    return args.total_batch_size // micro_tokens


def check_args(args):
    """Reject bad values before any work starts, saying what to change."""
    config = build_config(args)
    positive = ("batch_size", "sequence_length", "num_iterations", "val_tokens", "sample_length")
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.eval_only and not args.resume_from:
        raise UsageError("--eval_only 1 evaluates a checkpoint: give it with --resume_from PATH (or latest)")
    for name in ("hellaswag_every", "total_batch_size", "grad_accumulation_steps", "warmup_iters", "warmdown_iters", "val_loss_every", "val_max_steps", "val_batch_size", "sample_every", "save_every", "keep_last", "weight_decay", "grad_clip"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must not be negative, not {getattr(args, name)}")
    if args.sample_every and args.sample_length + 1 > config.block_size:
        raise UsageError(f"--sample_length {args.sample_length} + the <|endoftext|> prompt exceed block_size {config.block_size}")
    if args.sequence_length > config.block_size and not args.eval_only:  # --eval_only checks the checkpoint's
        raise UsageError(f"--sequence_length {args.sequence_length} is longer than the model's block_size {config.block_size}: lower it or raise --block_size")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed must be between 0 and 2**32 - 1, not {args.seed}")
    if args.learning_rate <= 0:
        raise UsageError(f"--learning_rate must be positive, not {args.learning_rate}")
    if not 0.0 <= args.learning_rate_decay_frac <= 1.0:
        raise UsageError(f"--learning_rate_decay_frac must be in [0, 1], not {args.learning_rate_decay_frac}")
    if args.warmup_iters + args.warmdown_iters > args.num_iterations:
        raise UsageError(f"--warmup_iters ({args.warmup_iters}) + --warmdown_iters ({args.warmdown_iters}) exceed --num_iterations ({args.num_iterations})")
    for name in ("recompute", "cuda_graphs"):  # both set torch.compile's options
        if getattr(args, name) and not args.compile:
            raise UsageError(f"--{name} 1 works through torch.compile: add --compile 1")
    if args.log_wandb and importlib.util.find_spec("wandb") is None:
        raise UsageError("--log_wandb 1, but wandb is not installed: pip install wandb")
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    grad_accum = grad_accumulation_steps(args, world_size)
    if args.cuda_graphs:
        check_cuda_graphs(args, world_size, grad_accum)


def check_cuda_graphs(args, world_size, grad_accum):
    """--cuda_graphs 1 where it is known to be right. With gradient accumulation, torch.compile's
    CUDA graphs overwrite a micro-batch's gradient buffer with the next one's (pytorch/pytorch#169545);
    under DDP they are untested here."""
    if args.device == "cpu" or not torch.cuda.is_available():
        raise UsageError("--cuda_graphs 1 needs a CUDA GPU")
    if world_size > 1:
        raise UsageError(f"--cuda_graphs 1 runs on one GPU only, not {world_size} processes: leave it off under torchrun")
    if grad_accum > 1:
        raise UsageError("--cuda_graphs 1 cannot accumulate gradients (its graphs would overwrite them): lower --total_batch_size to batch_size * sequence_length, or leave it off")


def model_from_checkpoint(checkpoint, args, ctx):
    """The checkpoint's model on the context's device, its attention kernels chosen for --attn_backend."""
    model = GPT(config_from_checkpoint(checkpoint))
    model.load_state_dict(checkpoint["model"])
    return model.to(ctx.device).set_kernels(args.attn_backend, ctx.device, ctx.dtype, args.kernels)


def eval_checkpoint(args, given):
    """--eval_only: the val loss, and HellaSwag where its file exists, of a saved model under its own
    config, at its run's sequence length and val tokens unless flags (given) set them; printed and
    appended to eval.jsonl beside the checkpoint, leaving the run's own metrics.jsonl alone."""
    ctx = setup_context(args)

    def setup():
        path = resolve_resume_path(args.resume_from, args.output_dir)
        checkpoint = load_checkpoint(path)
        config = config_from_checkpoint(checkpoint)
        for name in ("sequence_length", "val_tokens"):
            if name not in given and name in checkpoint.get("args", {}):
                setattr(args, name, checkpoint["args"][name])
        if args.sequence_length > config.block_size:
            raise UsageError(f"--sequence_length {args.sequence_length} is longer than the checkpoint's block_size {config.block_size}")
        val_tokens = load_val_tokens(args, config, ctx.world_size)
        hellaswag = read_hellaswag(args.hellaswag_file) if "hellaswag_file" in given or Path(args.hellaswag_file).exists() else None
        if val_tokens is None and hellaswag is None:
            raise UsageError(f"nothing to evaluate: no val data (--input_val_bin) and no HellaSwag file at {args.hellaswag_file}")
        return path, checkpoint, config, val_tokens, hellaswag

    path, checkpoint, config, val_tokens, hellaswag = agree_on_errors(setup, ctx)
    model = model_from_checkpoint(checkpoint, args, ctx)
    record, parts = {"checkpoint": str(path), "step": checkpoint["step"]}, []
    if val_tokens is not None:
        record["val_loss"], record["val_tokens"] = evaluate(model, val_tokens, args, ctx)
        parts.append(f"val loss {record['val_loss']:.4f} ({record['val_tokens']:,} tokens of {args.sequence_length})")
    if hellaswag is not None:
        acc, acc_norm, count = evaluate_hellaswag(model, hellaswag, gpt2_encoding(), ctx, config.block_size)
        record.update(hellaswag_acc=acc, hellaswag_acc_norm=acc_norm, hellaswag_examples=count)
        parts.append(f"HellaSwag acc_norm {acc_norm:.4f}, acc {acc:.4f} ({count:,} examples)")
    if ctx.master:
        print(f"{path} (step {checkpoint['step']}): {' | '.join(parts)}")
        with open(path.parent / "eval.jsonl", "a") as f:
            f.write(json_line(record))
    shutdown(ctx)


def sample_from_checkpoint(args):
    """--sample_from: print a continuation of --prompt from a saved model, then exit."""
    checkpoint = load_checkpoint(resolve_resume_path(args.sample_from, args.output_dir, "--sample_from"))
    ctx = setup_context(args)
    model = model_from_checkpoint(checkpoint, args, ctx).eval()
    encoding = gpt2_encoding()
    prompt_tokens = len(encoding.encode_ordinary(args.prompt)) or 1
    if prompt_tokens + args.sample_length > model.config.block_size:
        raise UsageError(f"the prompt ({prompt_tokens} tokens) + --sample_length {args.sample_length} exceed the model's block_size {model.config.block_size}")
    print(sample_text(model, encoding, ctx, args.prompt, args.sample_length, args.seed, args.top_k or None, args.temperature))


def given_flags(argv):
    """The flags argv sets (their dest names), told apart from defaults by a parse without any."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # torchrun stops its workers with SIGTERM: stop as on Ctrl-C


def main(argv=None):
    args = build_parser().parse_args(argv)
    is_rank0 = int(os.environ.get("RANK", 0)) == 0
    try:
        if args.sample_from:
            if args.sample_length < 1 or args.top_k < 0:
                raise UsageError(f"--sample_length must be at least 1 and --top_k not negative, not {args.sample_length} and {args.top_k}")
            if args.temperature <= 0:
                raise UsageError(f"--temperature must be positive, not {args.temperature}")
            sample_from_checkpoint(args)
            return
        check_args(args)
        if args.eval_only:
            eval_checkpoint(args, given_flags(argv))
            return
        signal.signal(signal.SIGTERM, stop_on_sigterm)
        train(args)
    except UsageError as e:
        if isinstance(e, TrainingStopped):  # every rank meets it alike: one line, from rank 0
            if is_rank0:
                print(f"error: {e}; {resume_hint(args.output_dir)}", file=sys.stderr)
        else:
            print(f"error: {e}", file=sys.stderr)
        if dist.is_initialized():
            dist.destroy_process_group()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if is_rank0:
            training = not (args.sample_from or args.eval_only)
            print(f"interrupted{': ' + resume_hint(args.output_dir) if training else ''}", file=sys.stderr)
        sys.exit(130)
    finally:
        release_output_dir()


if __name__ == "__main__":
    main()
