"""tools/device_session.sh, the helpers of the GPU session scripts: each call's time budget."""

import subprocess
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parent.parent


def session(script):
    """script run by bash from the project root, unset variables an error, as the session scripts run."""
    return subprocess.run(["bash", "-c", "set -u; " + script], cwd=REPO_DIR, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "script, budget",
    [
        ("LIMIT=300 . tools/device_session.sh; left", 300),  # an assignment before `.` lasts only while it reads
        ("LIMIT=300; . tools/device_session.sh; left", 300),
        (". tools/device_session.sh; left", 570),
    ],
)
def test_the_call_budget_holds_however_limit_is_given(script, budget):
    out = session(script)
    assert out.returncode == 0, out.stderr
    assert budget - 2 <= int(out.stdout) <= budget


def test_pairs_starts_no_round_it_has_no_time_for():
    script = "LIMIT=100; FLAGS=''; . tools/device_session.sh; pairs pairs_x 25 5 d12 d12_flash_mla"
    out = session(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pairs_x: skipped at ")


def test_pairs_hands_the_bench_what_follows_the_two_configs():
    # a label no run has: the bench refuses it before running anything, which shows it got the flag
    script = "FLAGS=''; . tools/device_session.sh; pairs pairs_x 25 5 d12 d12_flash_mla --trainer train_gpt2_mod.py --against 'd12 no.py'"
    out = session(script)
    assert "error: --against 'd12 no.py': no run has that label; the runs are 'd12 train_gpt2_mod.py', 'd12_flash_mla train_gpt2_mod.py'" in out.stderr
    assert out.stdout.startswith("pairs_x ended at ")


def test_a_tree_of_the_trainer_alone_gets_the_projects_data(tmp_path):
    tree = tmp_path / "base"
    tree.mkdir()
    script = f"FLAGS=''; . tools/device_session.sh; with_data {tree}; with_data {tree}; ls {tree}/data/shakespeare"
    out = session(script)
    assert out.returncode == 0, out.stderr
    assert "shakespeare_train_000001.bin" in out.stdout.split()
    assert (tree / "data").resolve() == REPO_DIR / "data"


def test_a_tree_with_its_own_data_keeps_it(tmp_path):
    (tmp_path / "data").mkdir()
    script = f"FLAGS=''; . tools/device_session.sh; with_data {tmp_path}"
    out = session(script)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "data").is_symlink() and not any((tmp_path / "data").iterdir())


MEASURED_PLANS = ["2026-12-07-h100-mla-latent-cublas", "2026-12-07-h100-mla-latent-norm/call2", "2026-12-07-h100-mla-xgrad-quack/call2"]


@pytest.mark.parametrize("plan", MEASURED_PLANS)
def test_touched_kernels_gives_what_the_plans_decided_by(plan):
    """The rule's helper, on the two profiles of a measured plan, prints that plan's touched.txt again."""
    d = f"docs/measurements/{plan}"
    out = session(f"FLAGS=''; . tools/device_session.sh; touched_kernels {d}/profile_mla_new.txt {d}/profile_mla_base.txt")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (REPO_DIR / d / "touched.txt").read_text()


def test_scaled_compares_the_touched_rows_at_one_clock():
    """The x-grad plan's second profile ran faster in every kernel: the shared rows give the ratio."""
    d = f"docs/measurements/{MEASURED_PLANS[-1]}"
    out = session(f"FLAGS=''; . tools/device_session.sh; touched_kernels {d}/profile_mla_new.txt {d}/profile_mla_base.txt --scaled")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith((REPO_DIR / d / "touched.txt").read_text())
    assert out.stdout.splitlines()[-1] == (
        "rows in both profiles: 47.505 ms a step with the change, 49.204 without (0.9655); "
        "the touched rows without, scaled by that: 13.664 ms a step, 0.404 more than with the change"
    )


def profile_table(rows):
    """A tools/profile_train.py output holding only its table of kernels: rows of (name, launches, ms)."""
    lines = ["| top kernels | kind | launches/step | ms/step |", "| --- | --- | --- | --- |"]
    return "\n".join(lines + [f"| {name} | matmul | {n} | {ms:.3f} |" for name, n, ms in rows]) + "\n\nafter the table\n"


def test_scaled_takes_out_a_clock_that_slowed_every_kernel(tmp_path):
    base = [("gemm_a", 12, 2.0), ("gemm_b", 24, 6.0), ("old_kernel", 12, 1.0)]
    new = [(name, n, ms * 0.9) for name, n, ms in base[:2]] + [("new_kernel", 12, 0.6)]
    (tmp_path / "base.txt").write_text(profile_table(base))
    (tmp_path / "new.txt").write_text(profile_table(new))
    out = session(f"FLAGS=''; . tools/device_session.sh; touched_kernels {tmp_path}/new.txt {tmp_path}/base.txt --scaled")
    assert out.returncode == 0, out.stderr
    # unscaled, the change looks 0.4 faster; at one clock, old_kernel's 1.0 is 0.9 against new_kernel's 0.6
    assert "1 rows in this profile only, 0.600 ms a step" in out.stdout and "1 rows in this profile only, 1.000 ms a step" in out.stdout
    assert out.stdout.splitlines()[-1].endswith("(0.9000); the touched rows without, scaled by that: 0.900 ms a step, 0.300 more than with the change")


def test_watch_compares_a_kernel_the_change_slowed_without_renaming_it(tmp_path):
    # one clock throughout; the change makes gemm_b's 1.0 into new_gemm's 0.5, and slows attention by 0.2
    base = [("flash_attn_bwd", 12, 4.0), ("gemm_a", 12, 2.0), ("gemm_b", 12, 1.0)]
    new = [("flash_attn_bwd", 12, 4.2), ("gemm_a", 12, 2.0), ("new_gemm", 12, 0.5)]
    (tmp_path / "base.txt").write_text(profile_table(base))
    (tmp_path / "new.txt").write_text(profile_table(new))
    out = session(f"python3 tools/touched_kernels.py {tmp_path}/new.txt {tmp_path}/base.txt --scaled")
    # unwatched, the slower attention reads as a slower clock and hides
    assert out.stdout.splitlines()[-1].endswith("(1.0333); the touched rows without, scaled by that: 1.033 ms a step, 0.533 more than with the change")
    out = session(f"python3 tools/touched_kernels.py {tmp_path}/new.txt {tmp_path}/base.txt --scaled --watch flash_attn")
    assert out.stdout.splitlines()[-1] == ("rows in both profiles less those matching flash_attn: 2.000 ms a step with the change, 2.000 without (1.0000); "
                                           "the touched and matching rows without, scaled by that: 5.000 ms a step, 0.300 more than with the change")
    out = session(f"python3 tools/touched_kernels.py {tmp_path}/new.txt {tmp_path}/base.txt --scaled --watch '('")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("touched_kernels.py: error: --watch '(': missing )")


def test_touched_kernels_says_which_file_is_no_profile(tmp_path):
    (tmp_path / "log.txt").write_text("Traceback (most recent call last):\n")
    out = session(f"python3 tools/touched_kernels.py {tmp_path}/log.txt {tmp_path}/log.txt")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].endswith(f"{tmp_path}/log.txt: no table of kernels; is it tools/profile_train.py's output?")


SCALED = "rows in both profiles: 47.505 ms a step with the change, 49.204 without (0.9655); the touched rows without, scaled by that: 13.664 ms a step, {} more than with the change\n"


@pytest.mark.parametrize(
    "saved, tests, decision",
    [
        ("0.404", "7 passed in 95.1s\nexit status 0\n", "."),
        ("0.049", "7 passed in 95.1s\nexit status 0\n", ".base"),  # saves less than the rule's 0.05
        ("-0.235", "7 passed in 95.1s\nexit status 0\n", ".base"),  # slower with the change
        ("0.404", "1 failed, 6 passed in 95.1s\nexit status 1\n", ".base"),
        ("0.404", "1 passed in 5.0s\nexit status 0\n", ".base"),  # fewer tests ran than the rule wants
        ("0.404", "exit status 124\n", ".base"),  # cut off before any test finished
    ],
)
def test_keep_rule_keeps_a_change_only_where_it_saves_enough_at_one_clock_and_the_tests_pass(tmp_path, saved, tests, decision):
    (tmp_path / "touched.txt").write_text("with the change: ...\n" + SCALED.format(saved))
    (tmp_path / "gpu_tests.txt").write_text(tests)
    out = session(f"FLAGS=''; . tools/device_session.sh; RESULTS={tmp_path}; keep_rule 0.05 2")
    assert out.returncode == 0, out.stderr
    assert out.stdout == decision + "\n"


def test_compare_profiles_runs_nothing_it_has_no_time_for(tmp_path):
    out = session(f"LIMIT=30; FLAGS=''; . tools/device_session.sh; RESULTS={tmp_path}; compare_profiles .base d12_flash_mla 'mla'; keep_rule 0.05 2")
    assert out.stdout.startswith("base: skipped at ") and "\nnew: skipped at " in out.stdout and "\ntests: skipped at " in out.stdout
    assert out.stdout.endswith("\n.base\n")  # no profiles, no tests: the change is not kept


def test_compare_profiles_compares_the_two_trees_profiles_watching_what_watch_names(tmp_path):
    """With the profiler stood in by the x-grad plan's two profiles: touched.txt at one clock, FA4's
    rows compared with the touched ones."""
    d = f"docs/measurements/{MEASURED_PLANS[-1]}"
    stand_in = f'profile() {{ cp {d}/profile_mla_$([ "$1" = . ] && echo new || echo base).txt "$RESULTS/profile_$2.txt"; }}'
    out = session(f"FLAGS=''; . tools/device_session.sh; RESULTS={tmp_path}; {stand_in}; WATCH=flash_attn compare_profiles .base d12_flash_mla no_such_test")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "touched.txt").read_text().splitlines()[-1].endswith("the touched and matching rows without, scaled by that: 24.609 ms a step, 0.570 more than with the change")
    assert "exit status 5" in (tmp_path / "gpu_tests.txt").read_text()  # pytest: no test selected
