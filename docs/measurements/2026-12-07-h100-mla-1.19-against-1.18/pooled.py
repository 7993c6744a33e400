"""R1 pooled: 1.19.0's MLA/d12 paired ratios from the morning's rounds (labels without a trainer)
and this plan's (labels with one), with the 95% t-interval. Run from the project root."""
import json
import sys

sys.path.insert(0, "tools")
from bench_train import label  # noqa: E402
from compare_runs import interval  # noqa: E402


def ratios(path, num, den):
    rounds = {}
    for run in json.load(open(path)):
        if "failed" not in run:
            rounds.setdefault(run["round"], {})[label(run)] = run["summary"]["tokens_per_s"]
    return [r[num] / r[den] for r in rounds.values() if num in r and den in r]


MORNING = "docs/measurements/2026-12-07-h100-mla-xgrad-quack/"
HERE = "docs/measurements/2026-12-07-h100-mla-1.19-against-1.18/"
morning = [x for f in ("pairs_3_0955", "pairs_3_1005") for x in ratios(f"{MORNING}{f}.json", "d12_flash_mla", "d12")]
here = [x for f in ("pairs_2_1222", "pairs_3_1228", "pairs_3_1237") for x in ratios(f"{HERE}{f}.json", "d12_flash_mla train_gpt2_mod.py", "d12 train_gpt2_mod.py")]
for name, values in (("morning", morning), ("this plan", here), ("pooled", morning + here)):
    s = interval(values)
    print(f"{name}: {s['n']} rounds, mean {s['mean']:.4f}, 95% interval {s['mean'] - s['half_width']:.4f}-{s['mean'] + s['half_width']:.4f}")
