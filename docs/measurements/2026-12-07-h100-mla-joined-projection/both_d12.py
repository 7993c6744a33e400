"""Each MLA run over the geometric mean of its round's two d12 runs. d12's code is the same in both
trainer files, so the mean of the two is d12's figure in that round with less of the rounds'
order in it. Run from the project root."""
import math
import sys

sys.path.insert(0, "tools")
from bench_train import load_records, rounds_by_label  # noqa: E402
from compare_runs import interval  # noqa: E402

HERE = "docs/measurements/2026-12-07-h100-mla-joined-projection/"
rounds = rounds_by_label(load_records([f"{HERE}{f}.json" for f in ("pairs_3_1440", "pairs_3_1450")]))
D12 = ("d12 .base/train_gpt2_mod.py", "d12 train_gpt2_mod.py")
for mla in ("d12_flash_mla .base/train_gpt2_mod.py", "d12_flash_mla train_gpt2_mod.py"):
    ratios = [runs[mla] / math.sqrt(runs[D12[0]] * runs[D12[1]]) for runs in rounds if mla in runs and all(d in runs for d in D12)]
    s = interval(ratios)
    print(f"{mla} / both d12: {s['n']} rounds, mean {s['mean']:.4f}, 95% interval {s['mean'] - s['half_width']:.4f}-{s['mean'] + s['half_width']:.4f}")
