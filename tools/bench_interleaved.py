"""
Named configs' training steps in one process, timed in alternating blocks. Each config is built as
the trainer builds it (its model, kernels, torch.compile, optimizer and train_step) and warmed up;
then each round times a block of --steps steps of every config, every second round in reverse
order, after --settle untimed steps (the first after a switch between configs). Each step is timed
as the trainer times it, and a block gives their median, as the trainer's summary does. Blocks
seconds apart share the GPU's clock and temperature, which runs in separate processes
(bench_train.py) do not, and a round costs seconds where a process costs a startup and a compile.
The summary gives each config's tokens/s over the first's, paired by round: the mean and its 95%
interval. Two models in one process are not the trainer's run: check a config's speed here against
its bench_train.py runs on the same machine (README, "Comparing speed"). Flags after -- go to
every config.

    python tools/bench_interleaved.py d12 d12_flash_mla --rounds 10 --json interleaved.json -- --batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1
    python tools/bench_train.py --summarize interleaved.json
"""

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

from bench_train import summary
from trainer_steps import TrainerSteps, m, split_at_dashes


def measure(steps, name, n, settle, round_number):
    """One block: settle untimed steps, then n timed, each as the trainer times a step, and their
    median as the trainer's summary takes it; a run record as bench_train.py writes one."""
    if settle:
        steps.run(settle)
    ms = statistics.median(steps.run(n))
    return {"model": name, "device": m.device_name(steps.ctx.device), "round": round_number, "summary": {"median_step_ms": ms, "tokens_per_s": steps.tokens_per_step / ms * 1e3}}


def main():
    argv, extra = split_at_dashes(sys.argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="named configs to compare (the first is the baseline)")
    p.add_argument("--rounds", type=int, default=10, help="rounds, each a block of every config")
    p.add_argument("--steps", type=int, default=20, help="timed steps per block (their median ms per step)")
    p.add_argument("--settle", type=int, default=2, help="untimed steps at the start of each block")
    p.add_argument("--warmup", type=int, default=10, help="steps of each config before the first round (compilation, JIT, allocator)")
    p.add_argument("--json", help="also write the blocks' records to this file (bench_train.py --summarize reads it)")
    args = p.parse_args(argv)
    if len(set(args.models)) < 2:
        m.usage_error("name at least two different configs to compare")
    if args.rounds < 1 or args.steps < 1 or args.settle < 0 or args.warmup < 1:
        m.usage_error("--rounds, --steps and --warmup must be at least 1, --settle at least 0")
    # every config's flags checked (an unknown name by the trainer's build_config) before any compile
    configs = {name: TrainerSteps([*extra, "--model", name]) for name in args.models}
    print(f"measured {datetime.date.today()}: {args.rounds} rounds of {args.steps} steps per config, after {args.settle} untimed; median ms per step\n")
    for name, steps in configs.items():
        steps.build()
        first = steps.run(1)[0]
        if args.warmup > 1:
            steps.run(args.warmup - 1)
        print(f"{name}, first step {first / 1e3:.1f} s:\n{m.describe_kernels(steps.raw_model)}", flush=True)
    print("\n| round | config | device | ms/step | tokens/s |\n| --- | --- | --- | --- | --- |")
    records = []
    for round_number in range(1, args.rounds + 1):
        order = list(configs.items()) if round_number % 2 else list(configs.items())[::-1]
        for name, steps in order:
            record = measure(steps, name, args.steps, args.settle, round_number)
            records.append(record)
            print(f"| {round_number} | {name} | {record['device']} | {record['summary']['median_step_ms']:.2f} | {record['summary']['tokens_per_s']:,.0f} |", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    print(f"\n{summary(records)}")


if __name__ == "__main__":
    main()
