"""
Compare training runs, grouped by config: each config's mean val loss over its runs (seeds), with a
95% t-interval, at equal tokens and at equal training time (counted from the end of the first step,
which holds torch.compile: a cold compile and a cached one differ by tens of seconds); for each config against a baseline, the
difference of the means, its 95% Welch t-interval and a verdict (better, worse, or not
distinguishable at this many seeds). Writes a markdown table (printed either way), the same numbers
as JSON, and a PNG of the loss curves (each config's mean, with a band for the interval where it has
several runs). Reads each run directory's metrics.jsonl and run.json (written by train_gpt2_mod.py).
--group_by FLAG splits a config's runs by that trainer flag's value, to compare one config under,
say, two --kernels choices.

    python tools/compare_runs.py runs/sweep/*/* --baseline d12 --plot compare.png --table compare.md --json compare.json
    python tools/compare_runs.py runs/kernels/* --group_by kernels --baseline "d12 --kernels pytorch"
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

# what runs must share to be compared: the same tokens per step, sequences and data
SHARED_ARGS = ("sequence_length", "input_bin", "input_val_bin", "val_tokens")
# two-sided 95% quantiles of Student's t by degrees of freedom; between rows the smaller df's
# (larger) value is taken, which widens the interval rather than narrowing it
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


class CompareError(Exception):
    """Runs that cannot be compared, said in one line."""


def t_975(df):
    return T_975[max(k for k in T_975 if k <= df)] if df < 1e9 else 1.960


def load_run(run_dir):
    run_dir = Path(run_dir)
    metrics_path, info_path = run_dir / "metrics.jsonl", run_dir / "run.json"
    if not metrics_path.exists() or not info_path.exists():
        raise CompareError(f"{run_dir} is not a finished run (it needs metrics.jsonl and run.json)")
    try:
        records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as e:
        raise CompareError(f"{run_dir}: a file is not valid JSON ({e})") from None
    val = [r for r in records if r.get("val_loss") is not None]
    if not val:
        raise CompareError(f"{run_dir} has no val loss to compare (it ran with --input_val_bin '')")
    train = [r for r in records if r.get("train_loss") is not None]
    compiled_by = next((r["train_time_s"] for r in train if r["step"] == 1), 0.0)
    for r in records:
        r["time_s"] = max(0.0, r["train_time_s"] - compiled_by)  # training time after the first step
    return {"dir": run_dir, "info": info, "train": train, "val": val, "group": info["model"]}


def check_comparable(runs):
    """Every run shares tokens per step, sequence length and data with the first."""
    first = runs[0]
    for run in runs[1:]:
        pairs = [("tokens per step", first["info"]["tokens_per_step"], run["info"]["tokens_per_step"])]
        pairs += [(f"--{k}", first["info"]["args"].get(k), run["info"]["args"].get(k)) for k in SHARED_ARGS]
        for what, a, b in pairs:
            if a != b:
                raise CompareError(f"{first['dir']} and {run['dir']} differ in {what} ({a} against {b}): compare runs of one setup")


def value_at(records, x_key, x):
    """The val loss at x (tokens or time_s), interpolated linearly between logged points."""
    points = [(r[x_key], r["val_loss"]) for r in records]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    if points and abs(points[-1][0] - x) < 1e-9:
        return points[-1][1]
    raise CompareError(f"no val loss at {x_key} = {x}")


def interval(values):
    """Mean, sample standard deviation and the 95% t-interval's half-width (None for one value)."""
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "half_width": None}
    sd = statistics.stdev(values)
    return {"n": n, "mean": mean, "sd": sd, "half_width": t_975(n - 1) * sd / math.sqrt(n)}


def difference(a, b):
    """a's mean minus b's, with its 95% Welch t-interval, and the verdict for a lower-is-better loss."""
    diff = a["mean"] - b["mean"]
    seeds = min(a["n"], b["n"])
    if seeds < 2:
        return {"difference": diff, "half_width": None, "verdict": "not distinguishable at 1 seed (no spread to judge by)"}
    va, vb = a["sd"] ** 2 / a["n"], b["sd"] ** 2 / b["n"]
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1)) if se > 0 else a["n"] + b["n"] - 2
    half = t_975(df) * se
    if diff + half < 0:
        verdict = "better"
    elif diff - half > 0:
        verdict = "worse"
    else:
        verdict = f"not distinguishable at {seeds} seeds"
    return {"difference": diff, "half_width": half, "df": df, "verdict": verdict}


def name_groups(runs, group_by):
    """Name each run's group: its config, and its value of each --group_by flag (so that runs of one
    config under, say, two --kernels choices are compared as two groups)."""
    for flag in group_by:
        if not any(flag in run["info"]["args"] for run in runs):
            raise CompareError(f"--group_by {flag}: no run has a flag --{flag}")
    for run in runs:
        run["group"] = " ".join([run["info"]["model"], *(f"--{flag} {run['info']['args'].get(flag)}" for flag in group_by)])


def group_runs(runs):
    groups = {}
    for run in runs:
        groups.setdefault(run["group"], []).append(run)
    return groups


def compare(runs, baseline):
    """The numbers of the table and the JSON: per config, the val loss at the tokens and at the
    training time every run reached, and each config against the baseline."""
    check_comparable(runs)
    tokens = min(run["val"][-1]["tokens"] for run in runs)
    seconds = min(run["val"][-1]["time_s"] for run in runs)
    groups = group_runs(runs)
    if baseline is not None and baseline not in groups:
        raise CompareError(f"--baseline {baseline}: no run of that config among {', '.join(map(repr, groups))}")
    result = {"tokens": tokens, "time_s": seconds, "baseline": baseline, "configs": {}}
    for name, members in groups.items():
        summaries = [m["info"].get("summary") or {} for m in members]
        result["configs"][name] = {
            "runs": [str(m["dir"]) for m in members],
            "seeds": [m["info"]["args"].get("seed") for m in members],
            "num_params": members[0]["info"]["num_params"],
            "at_tokens": interval([value_at(m["val"], "tokens", tokens) for m in members]),
            "at_time": interval([value_at(m["val"], "time_s", seconds) for m in members]),
            "tokens_per_s": statistics.fmean(s["tokens_per_s"] for s in summaries) if all(s.get("tokens_per_s") for s in summaries) else None,
            "peak_memory_gib": max(s["peak_memory_gib"] for s in summaries) if all(s.get("peak_memory_gib") for s in summaries) else None,
            "gpu": f"{members[0]['info']['world_size']} x {members[0]['info']['device']}",
        }
    if baseline is not None:
        base = result["configs"][baseline]
        for name, config in result["configs"].items():
            if name != baseline:
                config["vs_baseline"] = {key: difference(config[key], base[key]) for key in ("at_tokens", "at_time")}
    return result


def with_interval(stats):
    return f"{stats['mean']:.4f}" if stats["half_width"] is None else f"{stats['mean']:.4f} ± {stats['half_width']:.4f}"


def table(result):
    base = result["baseline"]
    lines = [
        f"| config | runs | parameters | val loss at {result['tokens']:,} tokens | val loss at {result['time_s']:.0f} s after step 1"
        + (f" | vs {base} at equal tokens | verdict" if base else "")
        + " | tokens/s | peak memory | GPU |",
        "| --- " * (8 + (2 if base else 0)) + "|",
    ]
    for name, c in result["configs"].items():
        row = f"| {name} | {c['at_tokens']['n']} | {c['num_params'] / 1e6:.1f}M | {with_interval(c['at_tokens'])} | {with_interval(c['at_time'])}"
        if base:
            vs = c.get("vs_baseline", {}).get("at_tokens")
            if vs is None:
                row += " | (baseline) | "
            else:
                diff = f"{vs['difference']:+.4f}" + (f" ± {vs['half_width']:.4f}" if vs["half_width"] is not None else "")
                row += f" | {diff} | {vs['verdict']}"
        speed = f"{c['tokens_per_s']:,.0f}" if c["tokens_per_s"] else "-"
        mem = f"{c['peak_memory_gib']:.2f} GiB" if c["peak_memory_gib"] else "-"
        lines.append(f"{row} | {speed} | {mem} | {c['gpu']} |")
    return "\n".join(lines) + "\n"


def mean_curve(members, key, x_key, xs):
    """Per x: the mean of key over the runs and the 95% half-width (0 for one run)."""
    means, halves = [], []
    for x in xs:
        stats = interval([value_at(m[key], x_key, x) if key == "val" else value_at_train(m["train"], x_key, x) for m in members])
        means.append(stats["mean"])
        halves.append(stats["half_width"] or 0.0)
    return means, halves


def value_at_train(records, x_key, x):
    return value_at([{x_key: r[x_key], "val_loss": r["train_loss"]} for r in records], x_key, x)


def plot(runs, result, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9), sharey="row")
    for name, members in group_runs(runs).items():
        color = None
        for row, key in enumerate(("train", "val")):
            for col, x_key, scale, end in ((0, "tokens", 1e6, result["tokens"]), (1, "time_s", 1.0, result["time_s"])):
                # the points of the first run inside the range every run covers
                lo, hi = max(m[key][0][x_key] for m in members), min(min(m[key][-1][x_key] for m in members), end)
                xs = sorted({r[x_key] for r in members[0][key] if lo <= r[x_key] <= hi})
                if len(xs) < 2:
                    continue
                means, halves = mean_curve(members, key, x_key, xs)
                scaled = [x / scale for x in xs]
                label = f"{name} ({len(members)} runs)" if len(members) > 1 else name
                (line,) = axes[row][col].plot(scaled, means, label=label, color=color, marker="o" if key == "val" else None, markersize=3, linewidth=1)
                color = line.get_color()  # one color per config in every panel
                if len(members) > 1:
                    axes[row][col].fill_between(scaled, [m - h for m, h in zip(means, halves)], [m + h for m, h in zip(means, halves)], color=color, alpha=0.2)
    for row, name in enumerate(("train loss (mean over runs)", "val loss (mean, 95% t-interval)")):
        axes[row][0].set_ylabel(name)
        axes[row][0].set_xlabel("tokens seen (millions)")
        axes[row][1].set_xlabel("training time after the first step (s; that step holds torch.compile)")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl and run.json)")
    p.add_argument("--baseline", help="the config the others are compared against (its name, e.g. d12; with --group_by, as the table names it, e.g. 'd12 --kernels pytorch')")
    p.add_argument("--group_by", action="append", default=[], help="a trainer flag (e.g. kernels) whose values split a config's runs into groups of their own (repeat it for several)")
    p.add_argument("--plot", help="write the loss curves to this PNG")
    p.add_argument("--table", help="write the markdown table to this file (it is printed either way)")
    p.add_argument("--json", help="write the numbers to this JSON file")
    p.add_argument("--title", default="train_gpt2_mod.py runs", help="the plot's title")
    args = p.parse_args()
    try:
        # a glob such as runs/sweep/* also matches the files a sweep writes beside its runs
        for path in args.runs:
            if Path(path).is_file():
                print(f"skipping {path}: a file, not a run directory", file=sys.stderr)
        runs = [load_run(d) for d in args.runs if not Path(d).is_file()]
        if not runs:
            raise CompareError("no run directory among the arguments")
        name_groups(runs, [flag.removeprefix("--") for flag in args.group_by])
        result = compare(runs, args.baseline)
    except CompareError as e:  # bad input: exit code 2, as the trainer's
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    text = table(result)
    print(text, end="")
    if args.table:
        Path(args.table).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(runs, result, args.plot, args.title)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
