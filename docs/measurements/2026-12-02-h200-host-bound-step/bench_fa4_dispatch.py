"""Per-call host cost of the packed FA4 operators as inductor's compiled code calls them (grad off),
on CPU, with the kernels replaced by allocations."""
import sys, time, statistics, torch
sys.path.insert(0, sys.argv[1])
import train_gpt2_mod as m
m.flash_attn4_attend = lambda q, k, v, window: m.attention_output_like(q, v)
m.flash_attn4_attend_backward = lambda grad_out, q, k, v, out, lse, window, dq=None, dk=None, dv=None: None
fwd, bwd = torch.ops.train_gpt2_mod.flash_attn4_packed_forward.default, torch.ops.train_gpt2_mod.flash_attn4_packed_backward.default
qkv = torch.randn(1, 8, 3, 1, 8); g = torch.randn(1, 8, 1, 8)
def body():  # the bodies alone, no operator
    m.attention_output_like(qkv[:, :, 0], qkv[:, :, 2]); torch.empty_like(qkv)
res = {}
with torch.no_grad():
    out, lse = fwd(qkv, 0)
    for name, fn in (("body only", body), ("forward + backward operator", lambda: (fwd(qkv, 0), bwd(g, qkv, out, lse, 0)))):
        ts = []
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(20000): fn()
            ts.append((time.perf_counter() - t) / 20000 * 1e6)
        res[name] = statistics.median(ts)
print(f"{sys.argv[1]}: body {res['body only']:.1f} us, operators {res['forward + backward operator']:.1f} us, dispatch {res['forward + backward operator'] - res['body only']:.1f} us per forward+backward pair")
