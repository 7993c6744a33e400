"""
The kernels a change touched, from two profiles of one config by tools/profile_train.py (with the
change and without, every kernel listed: --top 400): the rows (kernel name as printed, launches a
step) found in one profile only, their ms a step summed in each. A profile plan keeps or reverts its
change by these sums (docs/measurements/*/PLAN.md; `touched_kernels` in tools/device_session.sh).

    python3 tools/touched_kernels.py NEW BASE            # as each plan's touched.txt
    python3 tools/touched_kernels.py NEW BASE --scaled   # and BASE's touched rows at NEW's clock

Two profiles that ran at different GPU clocks differ in every kernel, touched or not. --scaled adds
one line: the rows both profiles share, summed in each, give the ratio of their clocks, and BASE's
touched rows are scaled by it before they are compared with NEW's. A clock moves compute-bound
kernels more than memory-bound ones, so that ratio is an average over the kernels the profiles share.
"""

import argparse
import collections


def kernel_rows(path):
    """A profile's table of kernels, from its header to the first blank line: {(name, launches): [ms, ...]};
    names are cut short, so several kernels may share one."""
    text = open(path).read()
    if "| top kernels |" not in text:
        raise ValueError(f"{path}: no table of kernels; is it tools/profile_train.py's output?")
    table = text[text.index("| top kernels |") :].split("\n\n")[0].splitlines()[2:]
    rows = collections.defaultdict(list)
    for name, _, launches, ms in (line.strip("| ").split(" | ") for line in table):
        rows[(name, launches)].append(float(ms))
    return rows


def only_in(mine, other):
    """mine's rows not found in other the same number of times."""
    return {key: ms for key, ms in mine.items() if len(ms) != len(other.get(key, []))}


def total(rows):
    return sum(map(sum, rows.values()))


def report(new, base):
    lines = []
    for label, mine, other in (("with the change", new, base), ("without", base, new)):
        only = only_in(mine, other)
        lines.append(
            f"{label}: {sum(map(len, mine.values()))} rows, {total(mine):.3f} ms a step in all; "
            f"{sum(map(len, only.values()))} rows in this profile only, {total(only):.3f} ms a step"
        )
        for (name, launches), ms in sorted(only.items(), key=lambda kv: -sum(kv[1])):
            lines.append(f"    {sum(ms):.3f}  {launches:>4} x {len(ms)}  {name}")
    return lines


def scaled_line(new, base):
    shared_new, shared_base = (total(rows) - total(only_in(rows, other)) for rows, other in ((new, base), (base, new)))
    clock = shared_new / shared_base
    touched_new, touched_base = total(only_in(new, base)), total(only_in(base, new)) * clock
    return (
        f"rows in both profiles: {shared_new:.3f} ms a step with the change, {shared_base:.3f} without "
        f"({clock:.4f}); the touched rows without, scaled by that: {touched_base:.3f} ms a step, "
        f"{touched_base - touched_new:.3f} more than with the change"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("new", help="the profile with the change")
    p.add_argument("base", help="the profile without it")
    p.add_argument("--scaled", action="store_true", help="also BASE's touched rows at NEW's clock")
    args = p.parse_args()
    try:
        new, base = kernel_rows(args.new), kernel_rows(args.base)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    print("\n".join(report(new, base) + ([scaled_line(new, base)] if args.scaled else [])))


if __name__ == "__main__":
    main()
