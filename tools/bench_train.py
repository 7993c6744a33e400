"""
Tokens/s, MFU and peak memory of named configs, measured by training them with the trainer.

Each config runs train_gpt2_mod.py for --steps steps on the bundled data (no validation, no
sampling, nothing written but its output dir); the trainer's steady-state summary (median step
time after the compile and warm-up steps) goes into a markdown table. With no config named, every
named config runs; one that fails (out of memory, say) gets a row saying so and the others go on.
Flags after -- go to every run.

Two runs of one config on one GPU can differ by a few percent, so a comparison wants several runs
of each side, taken in turn on one machine: --variant adds a set of trainer flags to compare (each
config runs under each variant), and --repeat runs the whole set again, every second round in the
reverse order (A B, B A, A B, ...), so that a GPU whose clock drifts over the session favours
neither side. A summary then gives each config and variant's median tokens/s, its range, its ratio
to the first, and the mean of its paired ratios: in each round, its run's tokens/s over the first's
run in that round, with a 95% t-interval over the rounds. Pairing takes out what a round shares
(the machine's state at the time); the interval says whether a gap stands out from the rest.
--trainer compares versions of the trainer script the same way: each config runs under each file
named, in turn (a version from git, say: `git show REV:train_gpt2_mod.py > old.py`). Every run
reads this checkout's bundled shards, wherever its script lies.
--summarize prints that summary again from the --json files of earlier benches, running nothing:
the runs of one comparison split over several calls to a machine that allows only so long a call.
--against LABEL takes the summary's ratios against another run than the first, named as the
table's first column names it: with two configs under two trainers, each pair of the four.
Where nvidia-ml-py is installed, each row also gives the GPU's SM clock and power while it was busy
(medians, read from this process), and the energy of a step (that power times the median step
time): the lent GPUs of one kind differ, and a GPU held at its power limit clocks down until its
steps' energy sets their pace.

    python tools/bench_train.py -- --batch_size 32 --sequence_length 1024 --compile 1
    python tools/bench_train.py d12 d12_post_norm -- --batch_size 32 --sequence_length 1024 --compile 1
    python tools/bench_train.py d12 --nproc 2 -- --batch_size 32 --compile 1
    python tools/bench_train.py d12 --variant "" --variant "--kernels pytorch" --repeat 3 -- --compile 1
    python tools/bench_train.py d12 d12_flash_mla --repeat 5 --json a.json -- --compile 1
    python tools/bench_train.py d12_flash_mla --trainer old.py --trainer train_gpt2_mod.py --repeat 5 -- --compile 1
    python tools/bench_train.py --summarize a.json b.json
    python tools/bench_train.py --summarize a.json --against "d12_flash_mla old.py"

--nanogpt DIR also runs nanoGPT's own train.py from a checkout of github.com/karpathy/nanoGPT,
first in each round, so that the anchor the README's ratios are taken against is measured on the
same machine, in turn with the trainer. It runs at the trainer flags' batch size, sequence length,
device, dtype, compile and width overrides, with one micro-step, on random tokens, and otherwise
at nanoGPT's defaults (GPT-2 124M without biases, whatever the configs named: compare it with
d12; its eval on one batch at the start; no checkpoints). Its row is the median of its own step
times after the 10th, like the trainer's, and the summary's "vs first" is then each side's ratio
to nanoGPT.

    python tools/bench_train.py d12 --nanogpt ~/nanoGPT --repeat 3 -- --batch_size 32 --sequence_length 1024 --compile 1
"""

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from compare_runs import interval  # noqa: E402
from train_gpt2_mod import MODEL_CONFIGS, build_parser, gpu_peak_flops, usage_error  # noqa: E402
from trainer_steps import split_at_dashes  # noqa: E402

import numpy as np  # noqa: E402

try:
    import pynvml  # nvidia-ml-py, where installed: the GPU's clock and power beside each run
except ImportError:
    pynvml = None

TRAINER = REPO / "train_gpt2_mod.py"
TRAIN_SHARDS = build_parser().get_default("input_bin")  # the bundled shards, for a trainer script lying elsewhere too
NANOGPT = "nanoGPT train.py"
NANOGPT_FILES = ("train.py", "model.py", "configurator.py")
# nanoGPT's train.py is a script: run it in this small wrapper, which then reads from its globals
# the model's size and the GPU's peak memory, which the script does not print
NANOGPT_RUNNER = """
import json, runpy, sys, torch
sys.argv[0] = "train.py"
run = runpy.run_path("train.py", run_name="__main__")
model, cuda = run["raw_model"], "cuda" in run["device"]
print("nanogpt run: " + json.dumps({"num_params": sum(p.numel() for p in model.parameters()),
      "n_layer": model.config.n_layer, "n_embd": model.config.n_embd,
      "device": torch.cuda.get_device_name() if cuda else "cpu",
      "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}))
"""
ITER_LINE = re.compile(r"^iter (\d+): loss \S+, time ([\d.]+)ms", re.M)
BUSY_PERCENT = 90  # samples taken while the GPU was this busy are of the training steps, not of the start-up


class GpuMonitor:
    """The utilization, SM clock, power and temperature of GPUs 0..gpus-1, read through NVML ten
    times a second from this process while a run goes on, so that reading them costs the run
    nothing. A GPU that clocks down under sustained load, or a slower machine, shows here."""

    def __init__(self, gpus):
        self.handles, self.samples, self.done = [], [], threading.Event()
        if pynvml is not None:
            try:
                pynvml.nvmlInit()
                self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]
            except pynvml.NVMLError:  # no driver: no GPU to read
                self.handles = []
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def __enter__(self):
        if self.handles:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        if self.handles:  # each nvmlInit wants its nvmlShutdown
            pynvml.nvmlShutdown()

    def sample(self):
        while not self.done.wait(0.1):
            try:
                for h in self.handles:
                    self.samples.append((pynvml.nvmlDeviceGetUtilizationRates(h).gpu, pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                                         pynvml.nvmlDeviceGetPowerUsage(h) / 1e3, pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)))
            except pynvml.NVMLError:  # a GPU that does not report one of these: no state for this run
                self.samples.clear()
                return


def gpu_state(samples):
    """Medians of the SM clock (MHz), power (W) and temperature (C) over the samples (utilization,
    clock, power, temperature) taken while the GPU was busy, or None where none was."""
    busy = [sample for sample in samples if sample[0] >= BUSY_PERCENT]
    if not busy:
        return None
    clock, power, temperature = (statistics.median(sample[i] for sample in busy) for i in (1, 2, 3))
    return {"sm_clock_mhz": clock, "power_w": power, "temperature_c": temperature, "busy_samples": len(busy)}


def failed_run(name, proc):
    """A run that failed: its output's ends to stderr, and the record of its row."""
    print(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", file=sys.stderr)
    return {"model": name, "failed": "out of memory" if "out of memory" in proc.stderr.lower() else f"exit code {proc.returncode}"}


def run(model, steps, nproc, extra, out_dir, trainer=TRAINER):
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    flags = ["--model", model, "--num_iterations", str(steps), "--warmup_iters", "0", "--input_bin", TRAIN_SHARDS, "--input_val_bin", "", "--output_dir", str(out_dir), "--overwrite", "1"]
    proc = subprocess.run([*launcher, str(trainer), *flags, *extra], capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if proc.returncode != 0:
        return failed_run(model, proc)
    return json.loads((Path(out_dir) / "run.json").read_text())


def nanogpt_settings(steps, extra, out_dir):
    """train.py's settings for a run like the trainer's with these flags."""
    trainer, _ = build_parser().parse_known_args(extra)
    settings = {"dataset": "random", "batch_size": trainer.batch_size, "block_size": trainer.sequence_length,
                "gradient_accumulation_steps": 1, "max_iters": steps - 1, "eval_interval": steps, "eval_iters": 1,
                "log_interval": 1, "always_save_checkpoint": False, "compile": bool(trainer.compile), "out_dir": out_dir}
    if trainer.device:
        settings["device"] = trainer.device
    if trainer.dtype or trainer.device == "cpu":  # nanoGPT's default off CUDA is float16
        settings["dtype"] = trainer.dtype or "float32"
    settings.update({k: getattr(trainer, k) for k in ("n_layer", "n_head", "n_embd") if getattr(trainer, k) is not None})
    return settings


def run_nanogpt(checkout, steps, extra, out_dir):
    """nanoGPT's train.py on random tokens (its uint16 format), in a copy of its three files; a
    record like the trainer's run.json."""
    work = Path(out_dir) / "nanogpt"
    shutil.rmtree(work, ignore_errors=True)
    (work / "data" / "random").mkdir(parents=True)
    for name in NANOGPT_FILES:
        shutil.copy(Path(checkout) / name, work / name)
    tokens = np.random.default_rng(0).integers(0, 50257, 2**20, dtype=np.uint16)
    for split in ("train", "val"):
        tokens.tofile(work / "data" / "random" / f"{split}.bin")
    settings = nanogpt_settings(steps, extra, str(work / "out"))
    flags = [f"--{key}={value}" for key, value in settings.items()]  # train.py's configurator.py reads --key=value
    proc = subprocess.run([sys.executable, "-c", NANOGPT_RUNNER, *flags], cwd=work, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    times = {int(i): float(ms) for i, ms in ITER_LINE.findall(proc.stdout)}
    if proc.returncode != 0 or len(times) != steps or "nanogpt run: " not in proc.stdout:
        return failed_run(NANOGPT, proc)
    return nanogpt_record(json.loads(proc.stdout.split("nanogpt run: ")[-1].splitlines()[0]), times, settings)


def nanogpt_record(run, times, settings):
    """The trainer's summary, from the step times train.py prints (it waits for each step's loss,
    so they are whole steps): the median of those after the 10th."""
    batch, seq = settings["batch_size"], settings["block_size"]
    median_ms = statistics.median(times[i] for i in range(10, len(times)))
    tokens_per_s = batch * seq / (median_ms / 1e3)
    flops_per_token = 6 * run["num_params"] + 12 * run["n_layer"] * run["n_embd"] * seq  # as the trainer counts GPT-2's
    peak = gpu_peak_flops(run["device"])
    summary = {"first_step_s": times[0] / 1e3, "steady_steps": len(times) - 10, "median_step_ms": median_ms, "tokens_per_s": tokens_per_s,
               "mfu": flops_per_token * tokens_per_s / peak if peak else None, "peak_memory_gib": run["peak_memory_gib"]}
    return {"model": NANOGPT, "num_params": run["num_params"], "device": run["device"], "world_size": 1, "grad_accumulation_steps": 1,
            "args": {"batch_size": batch, "sequence_length": seq}, "nanogpt_settings": settings, "summary": summary}


def label(info):
    """The config, the variant's flags where there are any, and the trainer script where --trainer named it."""
    return " ".join(filter(None, (info["model"], info.get("variant"), info.get("trainer"))))


def row(info):
    if "failed" in info:
        return f"| {label(info)} | failed: {info['failed']} | | | | | | | | | | |"
    s = info["summary"]
    args = info["args"]
    batch = f"{args['batch_size']}x{args['sequence_length']}x{info['world_size']}x{info['grad_accumulation_steps']}"
    mfu = f"{100 * s['mfu']:.1f}%" if s["mfu"] is not None else "-"
    mem = f"{s['peak_memory_gib']:.2f}" if s["peak_memory_gib"] is not None else "-"
    first = f"{s['first_step_s']:.1f}" if "first_step_s" in s else "-"  # not in runs before 1.6.0
    gpu = info.get("gpu_state")
    clock, power, energy = (f"{gpu['sm_clock_mhz']:.0f}", f"{gpu['power_w']:.0f}", f"{gpu['power_w'] * s['median_step_ms'] / 1e3:.1f}") if gpu else ("-", "-", "-")
    return f"| {label(info)} | {info['num_params'] / 1e6:.1f}M | {info['device']} x{info['world_size']} | {batch} | {s['median_step_ms']:.1f} | {s['tokens_per_s']:,.0f} | {mfu} | {mem} | {first} | {clock} | {power} | {energy} |"


def rounds_by_label(infos):
    """Each round's tokens/s by run label, rounds in the order they ran; failed runs and runs
    without a round (records from before rounds were kept) are left out."""
    rounds = {}
    for info in infos:
        if "failed" not in info and info.get("round") is not None:
            rounds.setdefault(info["round"], {})[label(info)] = info["summary"]["tokens_per_s"]
    return list(rounds.values())


def paired_ratios(infos, first):
    """Per config and variant, its tokens/s over first's in the same round, for each round where
    both ran."""
    ratios = {}
    for runs in rounds_by_label(infos):
        for name, value in runs.items():
            if first in runs:
                ratios.setdefault(name, []).append(value / runs[first])
    return ratios


def mean_with_interval(ratios):
    """The mean ratio, and its 95% t-interval where there are two rounds or more."""
    stats = interval(ratios)
    mean, half = stats["mean"], stats["half_width"]
    if half is None:
        return f"{mean:.3f}x, 1 round"
    return f"{mean:.3f}x ({mean - half:.3f}-{mean + half:.3f}), {stats['n']} rounds"


def check_against(against, labels):
    """--against names one of the runs' labels, or the tool ends with a usage error saying which there are."""
    if against is not None and against not in labels:
        usage_error(f"--against {against!r}: no run has that label; the runs are {', '.join(map(repr, dict.fromkeys(labels)))}")


def summary(infos, against=None):
    """Per config and variant, in the order they first ran: runs, median tokens/s, range, the
    median's ratio to the first one's (or against's, a label), and the mean of its paired ratios
    to it."""
    speeds = {}
    for info in infos:
        values = speeds.setdefault(label(info), [])  # a failed run's config is listed, with no value
        if "failed" not in info:
            values.append(info["summary"]["tokens_per_s"])
    medians = {name: statistics.median(values) for name, values in speeds.items() if values}
    first_name = against or next(iter(speeds))
    first = medians.get(first_name)
    paired = paired_ratios(infos, first_name)
    base = "first" if against is None else against
    lines = [f"| config | runs | median tokens/s | range | vs {base} | paired vs {base}, mean (95% interval) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, values in speeds.items():
        if name not in medians:
            lines.append(f"| {name} | 0 | | | | |")
            continue
        ratio = f"{medians[name] / first:.3f}x" if first else "-"
        pairs = mean_with_interval(paired[name]) if name != first_name and name in paired else "-"
        lines.append(f"| {name} | {len(values)} | {medians[name]:,.0f} | {min(values):,.0f}-{max(values):,.0f} | {ratio} | {pairs} |")
    return "\n".join(lines)


def load_records(paths):
    """The run records of earlier --json files, each file's rounds kept apart from the others'."""
    infos = []
    for index, path in enumerate(paths):
        try:
            records = json.loads(Path(path).read_text())
        except OSError as e:
            usage_error(f"--summarize {path}: {e.strerror}")
        except json.JSONDecodeError:
            usage_error(f"--summarize {path}: not a --json file of this tool (not JSON)")
        if not isinstance(records, list) or not all(isinstance(r, dict) and "model" in r and ("summary" in r or "failed" in r) for r in records):
            usage_error(f"--summarize {path}: not a --json file of this tool (no list of run records)")
        for record in records:
            record["round"] = (index, record["round"]) if record.get("round") is not None else None
        infos.extend(records)
    if not infos:
        usage_error("--summarize: the files hold no runs")
    return infos


def main():
    argv, extra = split_at_dashes(sys.argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="named configs to measure (default: all)")
    p.add_argument("--steps", type=int, default=40, help="training steps per config (the summary leaves out the first 10)")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) per run")
    p.add_argument("--variant", action="append", default=None, help="trainer flags of one variant, after those after -- (repeat it to compare several; \"\" is none)")
    p.add_argument("--trainer", action="append", default=None, metavar="FILE", help="a trainer script to run the configs with (repeat it to compare versions; default: this checkout's)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each config, variant and trainer, taken in turn")
    p.add_argument("--json", help="also write the runs' run.json records to this file")
    p.add_argument("--nanogpt", metavar="DIR", help="also run nanoGPT's train.py from this checkout, first in each round")
    p.add_argument("--summarize", nargs="+", metavar="JSON", help="run nothing: print the summary of the runs in these --json files")
    p.add_argument("--against", metavar="LABEL", help="the run the summary's ratios are taken against, by its label in the table's first column (default: the first)")
    args = p.parse_args(argv)
    if args.summarize:
        if args.models or extra:
            usage_error("--summarize runs nothing: leave out the configs and the trainer flags")
        infos = load_records(args.summarize)
        check_against(args.against, [label(info) for info in infos])
        print(summary(infos, args.against))
        return
    args.models = args.models or list(MODEL_CONFIGS)
    unknown = [m for m in args.models if m not in MODEL_CONFIGS]
    if unknown:
        usage_error(f"unknown model {unknown[0]!r}; valid names: {', '.join(MODEL_CONFIGS)}")
    if args.steps < 20:
        usage_error("--steps must be at least 20 (the first 10 steps are warm-up)")
    if args.nproc < 1:
        usage_error(f"--nproc must be at least 1, not {args.nproc}")
    if args.repeat < 1:
        usage_error(f"--repeat must be at least 1, not {args.repeat}")
    if args.nanogpt and not all((Path(args.nanogpt) / name).is_file() for name in NANOGPT_FILES):
        usage_error(f"--nanogpt {args.nanogpt}: not a nanoGPT checkout (it needs {', '.join(NANOGPT_FILES)})")
    if args.nanogpt and args.nproc > 1:
        usage_error("--nanogpt runs on one GPU: leave out --nproc")
    missing = [t for t in args.trainer or [] if not Path(t).is_file()]
    if missing:
        usage_error(f"--trainer {missing[0]}: no such file")
    variants, trainers = args.variant or [""], args.trainer or [None]
    sides = [(model, variant, trainer) for model in args.models for variant in variants for trainer in trainers]
    nanogpt = [NANOGPT] if args.nanogpt else []  # it runs first in each round
    check_against(args.against, nanogpt + [label({"model": model, "variant": variant, "trainer": trainer}) for model, variant, trainer in sides])
    # each row as soon as its config is measured, so a run cut short keeps what it measured
    print(f"measured {datetime.date.today()}, {args.steps} steps each, median of the steps after the 10th; batch = B x T x GPUs x accumulation\n")
    print("| config | params | GPU | batch | ms/step | tokens/s | MFU | peak memory (GiB) | first step (s) | SM clock (MHz) | power (W) | J/step per GPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    infos = []

    def record(measure, round_number):
        """One run, with the GPU's clock and power read beside it."""
        with GpuMonitor(args.nproc) as monitor:
            info = measure()
        info["gpu_state"], info["round"] = gpu_state(monitor.samples), round_number
        infos.append(info)
        print(row(info), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(infos, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(1, args.repeat + 1):
            if args.nanogpt:
                record(lambda: run_nanogpt(args.nanogpt, args.steps, extra, tmp), round_number)
            for model, variant, trainer in sides if round_number % 2 else reversed(sides):
                named = {"trainer": trainer} if trainer else {}
                record(lambda: dict(run(model, args.steps, args.nproc, [*extra, *shlex.split(variant)], Path(tmp) / "run", trainer or TRAINER), variant=variant, **named), round_number)
    if args.repeat > 1 or len(variants) > 1 or len(trainers) > 1 or args.nanogpt:
        print(f"\n{summary(infos, args.against)}")
    if any("failed" in info for info in infos):
        sys.exit(1)


if __name__ == "__main__":
    main()
