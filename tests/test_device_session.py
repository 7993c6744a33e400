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


@pytest.mark.parametrize("plan", ["2026-12-07-h100-mla-latent-cublas", "2026-12-07-h100-mla-latent-norm/call2"])
def test_touched_kernels_gives_what_the_plans_decided_by(plan):
    """The rule's helper, on the two profiles of a measured plan, prints that plan's touched.txt again."""
    d = f"docs/measurements/{plan}"
    out = session(f"FLAGS=''; . tools/device_session.sh; touched_kernels {d}/profile_mla_new.txt {d}/profile_mla_base.txt")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (REPO_DIR / d / "touched.txt").read_text()
