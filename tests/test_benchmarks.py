"""The benchmark scripts keep working (tiny sizes; the real runs are in benchmarks/RESULTS.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "eval" / "scifact"


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="../shared/eval/scifact is not beside the repo")
def test_scifact_benchmark_runs(tmp_path: Path) -> None:
    data_dir = tmp_path / "db"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.scifact",
            "--limit",
            "5",
            "--sample",
            "60",
            "--data-dir",
            str(data_dir),
        ],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1]}
    for mode in ("vector", "keyword", "hybrid"):
        ndcg = float(rows[mode][6])
        assert 0.0 <= ndcg <= 1.0
    assert float(rows["hybrid"][6]) > 0.3  # 5 claims over ~65 abstracts: well above chance
