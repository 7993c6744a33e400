"""
Compare training runs: a PNG of train and val loss against tokens seen and against training time,
one line per run, and a markdown table (config, parameters, final val loss, tokens/s, MFU, peak
memory, GPU). Reads each run directory's metrics.jsonl and run.json (written by train_gpt2_mod.py).

    python tools/compare_runs.py runs/* --plot docs/compare.png --table docs/compare.md
"""

import argparse
import json
import sys
from pathlib import Path


def load_run(run_dir):
    run_dir = Path(run_dir)
    metrics_path, info_path = run_dir / "metrics.jsonl", run_dir / "run.json"
    if not metrics_path.exists() or not info_path.exists():
        sys.exit(f"error: {run_dir} is not a finished run (it needs metrics.jsonl and run.json)")
    try:
        records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as e:
        sys.exit(f"error: {run_dir}: a file is not valid JSON ({e})")
    return {"dir": run_dir, "info": info, "train": [r for r in records if "train_loss" in r], "val": [r for r in records if "val_loss" in r]}


def label(run):
    """The config's name, plus the run directory's name when it says something more."""
    name = run["info"]["model"]
    return name if run["dir"].name == name else f"{name} ({run['dir'].name})"


def table(runs):
    lines = [
        "| config | parameters | final val loss | tokens | tokens/s | MFU | peak memory | GPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        info, summary = run["info"], run["info"].get("summary", {})
        val = f"{run['val'][-1]['val_loss']:.4f}" if run["val"] else "-"
        tokens = f"{run['train'][-1]['tokens']:,}" if run["train"] else "-"
        speed = f"{summary['tokens_per_s']:,.0f}" if summary.get("tokens_per_s") else "-"
        mfu = f"{100 * summary['mfu']:.1f}%" if summary.get("mfu") else "-"
        mem = f"{summary['peak_memory_gib']:.2f} GiB" if summary.get("peak_memory_gib") else "-"
        gpu = f"{info['world_size']} x {info['device']}"
        lines.append(f"| {label(run)} | {info['num_params'] / 1e6:.1f}M | {val} | {tokens} | {speed} | {mfu} | {mem} | {gpu} |")
    return "\n".join(lines) + "\n"


def plot(runs, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9), sharey="row")
    for run in runs:
        color = None
        for row, (key, records) in enumerate((("train_loss", run["train"]), ("val_loss", run["val"]))):
            for col, x_key, scale in ((0, "tokens", 1e6), (1, "train_time_s", 1.0)):
                if not records:
                    continue
                xs, ys = [r[x_key] / scale for r in records], [r[key] for r in records]
                (line,) = axes[row][col].plot(xs, ys, label=label(run), color=color, marker="o" if key == "val_loss" else None, markersize=3, linewidth=1)
                color = line.get_color()  # one color per run in every panel
    for row, name in enumerate(("train loss", "val loss")):
        axes[row][0].set_ylabel(name)
        axes[row][0].set_xlabel("tokens seen (millions)")
        axes[row][1].set_xlabel("training time (s; the first step includes torch.compile)")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl and run.json)")
    p.add_argument("--plot", help="write the loss curves to this PNG")
    p.add_argument("--table", help="write the markdown table to this file (it is printed either way)")
    p.add_argument("--title", default="train_gpt2_mod.py runs", help="the plot's title")
    args = p.parse_args()
    # a glob such as runs/sweep/* also matches the files a sweep writes beside its runs
    for path in args.runs:
        if Path(path).is_file():
            print(f"skipping {path}: a file, not a run directory", file=sys.stderr)
    runs = [load_run(d) for d in args.runs if not Path(d).is_file()]
    if not runs:
        sys.exit("error: no run directory among the arguments")
    text = table(runs)
    print(text, end="")
    if args.table:
        Path(args.table).write_text(text)
    if args.plot:
        plot(runs, args.plot, args.title)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
