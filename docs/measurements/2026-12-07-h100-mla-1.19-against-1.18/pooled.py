"""R1 pooled: 1.19.0's MLA/d12 paired ratios from the morning's rounds (labels without a trainer)
and this plan's (labels with one), with the 95% t-interval. Run from the project root."""
import sys

sys.path.insert(0, "tools")
from bench_train import load_records, paired_ratios  # noqa: E402
from compare_runs import interval  # noqa: E402

MORNING = "docs/measurements/2026-12-07-h100-mla-xgrad-quack/"
HERE = "docs/measurements/2026-12-07-h100-mla-1.19-against-1.18/"
morning = paired_ratios(load_records([f"{MORNING}{f}.json" for f in ("pairs_3_0955", "pairs_3_1005")]), "d12")["d12_flash_mla"]
here = paired_ratios(load_records([f"{HERE}{f}.json" for f in ("pairs_2_1222", "pairs_3_1228", "pairs_3_1237")]), "d12 train_gpt2_mod.py")["d12_flash_mla train_gpt2_mod.py"]
for name, values in (("morning", morning), ("this plan", here), ("pooled", morning + here)):
    s = interval(values)
    print(f"{name}: {s['n']} rounds, mean {s['mean']:.4f}, 95% interval {s['mean'] - s['half_width']:.4f}-{s['mean'] + s['half_width']:.4f}")
