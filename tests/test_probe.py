"""scripts/probe.py, the catalogue of hostile-but-fair inputs, on a few of its cases: the runner
works, and what it checks holds (the whole catalogue: python scripts/probe.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_probe_holds_on_bad_data_sizes_and_a_hostile_checkpoint(tmp_path):
    report = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "probe.py"), "--select", "bad data/",
                           "--select", "sizes/hidden-1e9", "--select", "hostile checkpoints/declared-shape",
                           "--select", "hostile checkpoints/vocab-ansi", "--json", str(report)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1].split()
    assert summary[0] == "all" and int(summary[1]) >= 18 and summary[3] == "0", proc.stdout
    assert "bad data" in proc.stdout and "hostile checkpoints" in proc.stdout


def test_probe_lists_every_category():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "probe.py"), "--list"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    categories = {line.split("/")[0] for line in proc.stdout.splitlines()}
    assert categories == {"bad options", "bad data", "hostile checkpoints", "sizes", "pipes", "signals",
                          "concurrent", "disk full"}
