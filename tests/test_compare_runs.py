"""tools/compare_runs.py and sweep.sh on runs the test makes itself."""

import subprocess
import sys

import pytest

from conftest import REPO, SHORT_TRAIN

pytest.importorskip("matplotlib")


def test_sweep_trains_two_configs_and_compares_them(tmp_path):
    out = tmp_path / "sweep"
    flags = [*SHORT_TRAIN[2:], "--num_iterations", "6", "--warmup_iters", "2", "--val_loss_every", "3"]  # [2:]: not its --model
    proc = subprocess.run(["bash", str(REPO / "sweep.sh"), "--out", str(out), "--models", "d12 d12_post_norm", "--", *flags], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # four panels of curves, not an empty figure
    rows = (out / "compare.md").read_text().splitlines()
    assert rows[0].startswith("| config | parameters | final val loss | tokens | tokens/s | MFU | peak memory | GPU |")
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["d12", "d12_post_norm"]
    for row in rows[2:]:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert 0 < float(cells[2]) < 11  # a real final val loss
        assert cells[3] == f"{6 * 4 * 64:,}" and cells[7] == "1 x cpu"  # 6 steps of 4 x 64 tokens
    # the README's command: its glob also matches the sweep's compare.md and compare.png
    proc = subprocess.run([sys.executable, str(REPO / "tools/compare_runs.py"), *map(str, sorted(out.glob("*")))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2:] == rows[2:] and "skipping" in proc.stderr


def test_compare_rejects_a_directory_without_a_run(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools/compare_runs.py"), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "is not a finished run" in proc.stderr
