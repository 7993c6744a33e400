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
A change can also slow a kernel without renaming it (FlashAttention-4's, say, on a strided input):
--watch REGEX takes the rows whose names match out of the clock's ratio and compares them at one
clock with the touched rows.

    python3 tools/touched_kernels.py NEW BASE --scaled --watch flash_attn
"""

import argparse
import collections
import re


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


def watched(rows, watch):
    """rows whose kernel name the pattern watch finds (none where watch is None)."""
    return {key: ms for key, ms in rows.items() if watch is not None and watch.search(key[0])}


def scaled_line(new, base, watch=None):
    """The rows both profiles share, less the watched ones, give their clocks' ratio; the touched
    and watched rows are compared at one clock."""
    compared_new, compared_base = ({**only_in(rows, other), **watched(rows, watch)} for rows, other in ((new, base), (base, new)))
    shared_new, shared_base = total(new) - total(compared_new), total(base) - total(compared_base)
    clock = shared_new / shared_base
    touched_new, touched_base = total(compared_new), total(compared_base) * clock
    less = "" if watch is None else f" less those matching {watch.pattern}"
    touched = "the touched rows" if watch is None else "the touched and matching rows"
    return (
        f"rows in both profiles{less}: {shared_new:.3f} ms a step with the change, {shared_base:.3f} without "
        f"({clock:.4f}); {touched} without, scaled by that: {touched_base:.3f} ms a step, "
        f"{touched_base - touched_new:.3f} more than with the change"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("new", help="the profile with the change")
    p.add_argument("base", help="the profile without it")
    p.add_argument("--scaled", action="store_true", help="also BASE's touched rows at NEW's clock")
    p.add_argument("--watch", metavar="REGEX", help="with --scaled: rows whose kernel name matches are compared with the touched ones, not used for the clock")
    args = p.parse_args()
    try:
        new, base = kernel_rows(args.new), kernel_rows(args.base)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    try:
        watch = None if args.watch is None else re.compile(args.watch)
    except re.error as exc:
        p.error(f"--watch {args.watch!r}: {exc}")
    if watch is not None and not args.scaled:
        p.error("--watch is for --scaled")
    print("\n".join(report(new, base) + ([scaled_line(new, base, watch)] if args.scaled else [])))


if __name__ == "__main__":
    main()
