"""The benchmark scripts keep working (tiny sizes; the real runs are in benchmarks/RESULTS.md).

Only the SciFact one needs ../shared beside the repository; the others fall back to synthetic
sentences without it (see ``benchmarks.common.titles``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The first benchmark run in a fresh checkout embeds 1,000 SciFact titles once with the local
# model for its vectors (then cached under benchmarks/out; common.CENTRE_TITLES): ~10 s on a
# quiet 2-core VM with multilingual-e5-small (all ~5,200 took ~50 s, minutes under load).
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "eval" / "scifact"
LOCOMO = REPO.parent / "shared" / "eval" / "locomo-dev"


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="../shared/eval/scifact is not beside the repo")
def test_scifact_benchmark_runs(tmp_path: Path) -> None:
    out = _run(
        "benchmarks.scifact",
        *("--limit", "5", "--sample", "60", "--data-dir", str(tmp_path / "db")),
    )
    lines = out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1]}
    for mode in ("vector", "keyword", "hybrid"):
        ndcg = float(rows[mode][6])
        assert 0.0 <= ndcg <= 1.0
    assert float(rows["hybrid"][6]) > 0.3  # 5 claims over ~65 abstracts: well above chance


@pytest.mark.skipif(not LOCOMO.is_dir(), reason="../shared/eval/locomo-dev is not beside the repo")
def test_locomo_benchmark_runs(tmp_path: Path) -> None:
    env = tmp_path / "dialogue.env"
    env.write_text("# comment\nPGRECALL_CONTEXT_WINDOW=1\n", encoding="utf-8")
    out = _run(
        "benchmarks.locomo",
        *("--env", str(env), "--conversations", "1", "--questions", "10", "--weights", "1,0"),
        *("--neighbours", "1"),
    )
    assert "settings: PGRECALL_CONTEXT_WINDOW=1" in out
    overall = next(line.split() for line in out.splitlines() if line.startswith("ALL"))
    assert overall[1] == "10"  # questions asked
    assert 0.3 < float(overall[4]) <= 1.0  # hit@10 of 10 questions over one conversation
    assert "per-call weights vector,keyword=1,0: hit@10" in out
    assert "k=10 with neighbours=1: hit@10" in out  # the option through the HTTP API


def _run(*arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_longdocs_benchmark_runs() -> None:
    """The synthetic long documents, in-process and over HTTP (the SciFact part embeds 5,183
    abstracts with the local model first: minutes, so it is left to the real runs)."""
    out = _run("benchmarks.longdocs", "--no-scifact", *("--size", "300", "--queries", "12"))
    rows = {tuple(line.split()[:2]): line.split() for line in out.splitlines() if line.strip()}
    for where in ("in-process", "http", "httpx"):
        for mode in ("vector", "keyword", "hybrid"):
            p50, p99 = float(rows[where, mode][2]), float(rows[where, mode][3])
            assert 0 < p50 <= p99
        assert float(rows[where, "vector"][6]) == 1.0  # recall@10: exact below the threshold


def test_exact_scan_benchmark_runs() -> None:
    """Every lever's leg runs; the exact ones find today's top 10, the halfvec one included."""
    out = _run("benchmarks.exact_scan", *("--size", "300", "--queries", "10", "--rounds", "1"))
    legs = {line[:26].strip(): line[26:].split() for line in out.splitlines() if line[:1] != " "}
    for leg in ("today", "content out of line", "narrow table", "halfvec + exact re-rank"):
        assert float(legs[leg][3]) == 1.0, (leg, legs[leg])  # share of identical top 10s
    assert 0 < float(legs["graph, ef_search 200"][0]) <= float(legs["graph, ef_search 200"][1])
    assert "keyword over out_of_line" in out


def test_graph_recall_benchmark_runs() -> None:
    out = _run(
        "benchmarks.graph_recall",
        *("--rows", "1200", "--threshold", "500", "--queries", "10", "--ef", "10,100"),
        *("--rounds", "1"),
    )
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:1] == " "}
    assert 0 < float(rows["10"][3]) <= 1.0
    assert float(rows["100"][3]) >= 0.9  # recall@10 of a graph over 1,200 rows at ef_search 100


def test_ingest_benchmark_runs() -> None:
    out = _run(
        "benchmarks.ingest",
        *("--rows", "600", "--namespaces", "3", "--single-rows", "20", "--model-rows", "20"),
        "--skip-peers",
    )
    ratios = {
        line[:44].strip(): float(line.split()[-2])
        for line in out.splitlines()
        if line.startswith(("raw asyncpg", "pgrecall remember,"))
    }
    assert ratios["raw asyncpg binary COPY (the limit)"] == 1.0  # COPY against itself
    assert ratios["pgrecall remember, 1,000 per call"] > 0.0  # a share of COPY's rate
    assert "x the model alone" in out


def test_recall_and_scale_benchmarks_run() -> None:
    out = _run(
        "benchmarks.recall_latency",
        *("--rows", "3000", "--table", "6000", "--queries", "20"),
        "--skip-peers",
    )
    accuracies = [
        float(line.split("recall@10")[1].split()[0])
        for line in out.splitlines()
        if "recall@10" in line
    ]
    assert len(accuracies) == 3  # cases a, b and c
    assert min(accuracies) >= 0.9
    out = _run("benchmarks.scale", "--steps", "2000,4000", "--queries", "10")
    assert (
        len([line for line in out.splitlines() if line.strip().startswith(("2000", "4000"))]) == 2
    )


def test_first_recall_benchmark_runs() -> None:
    # In this environment: the routes after the install, which only a full run times.
    out = _run("benchmarks.first_recall", "--environment", sys.prefix)
    seconds = {
        line[:48].strip(): float(line.split()[-2])
        for line in out.splitlines()
        if line.endswith(" s") and line[:1].isalpha()
    }
    assert set(seconds) == {
        "pgrecall demo (new database)",
        "pgrecall demo again",
        "README example, no Ollama",
    }
    assert "keyword matches only" in out
    assert "Ollama is not reachable" in out


def test_hit_rendering_benchmark_runs() -> None:
    out = _run("benchmarks.hit_rendering", "--hits", "3", "--repeat", "20")
    # content, HitOut us/hit, Hit us/hit, saved, answer KB: a row per content length
    rows = [line.split() for line in out.splitlines() if line.split()[-2:-1] and "%" in line]
    assert len(rows) == 3  # 12 words, 234 words, 20,000 characters
    assert all(float(row[-4]) > 0 and float(row[-3]) > 0 for row in rows)


def test_versions_cost_benchmark_runs() -> None:
    out = _run(
        "benchmarks.versions_cost", *("--rows", "2000", "--queries", "10", "--ingest-rows", "2000")
    )
    ratios = [
        float(line.rsplit(":", 1)[1].rstrip("x")) for line in out.splitlines() if "p50" in line
    ]
    assert len(ratios) == 3  # vector, keyword, hybrid
    assert all(ratio > 0 for ratio in ratios)
    assert "a bare COPY of as many audit entries" in out


def test_context_cost_benchmark_runs() -> None:
    out = _run("benchmarks.context_cost", *("--turns", "200", "--single", "10"))
    lines = [line for line in out.splitlines() if "context costs" in line]
    assert len(lines) == 2  # calls of 100 and one a call
    assert all("/s, without " in line for line in lines)


def test_switch_cost_benchmark_runs() -> None:
    out = _run(
        "benchmarks.switch_cost",
        *("--cases", "b", "--rows", "2000", "--queries", "10", "--single", "5", "--batches", "2"),
        *("--rounds", "1", "--no-buffers", "--compact"),
    )
    # Four states, each settled, with every mode and both ingest shapes, and three moves
    # between them: two builds (the second only of what was written since) and a rollback.
    assert out.count(" vectors in ") == 3
    assert out.count(" indexes compacted in ") == 3  # each move ends with the compaction
    for state in ("first space", "switched", "rolled back", "switched again"):
        lines = out.split(f"  {state}: VACUUM in ", 1)[1].splitlines()[1:7]
        cells = [line.split()[0] for line in lines[:5]]
        assert cells == ["vector", "keyword", "hybrid", "one_a_call", "thousand_a_call"]
        # Each cell: the pairs' median ratio state / copy with its interval, and a verdict.
        for line in lines[:5]:
            median, low, high, verdict = line.split(" paired ")[1].split()[:4]
            assert float(low.strip("[,")) <= float(median) <= float(high.strip("]"))
            assert verdict in ("within", "beyond", "unresolved")
        assert " WAL " in lines[3]  # remember: the WAL a call
        assert lines[3].endswith(" B a call")
        assert lines[5].startswith("    one a call landed on (state / copy): ")


def test_plan_cache_benchmark_runs() -> None:
    out = _run(
        "benchmarks.plan_cache",
        *("--rows", "2000", "--queries", "10", "--rounds", "1", "--single", "10"),
    )
    blocks = out.split(" queries x 1\n")
    assert [block.splitlines()[-1] for block in blocks[:-1]][1:] == ["(b) 100 namespaces of 20, 10"]
    assert blocks[0].endswith("(a) one namespace of 2000, 10")
    for block in blocks[1:]:
        lines = block.splitlines()[:5]
        assert [line.split(" p50 ")[0].strip() for line in lines] == [
            "vector",
            "keyword",
            "hybrid",
            "one a call",
            "remember+recall",
        ]
        for line in lines:
            # Each leg: both p50s, and the pairs' median ratio generic / choice, its interval.
            assert "(generic / choice)" in line
            median, low, high = line.split(" paired ")[1].split()[:3]
            assert float(low.strip("[,")) <= float(median) <= float(high.strip("]"))


def test_console_load_benchmark_runs() -> None:
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which(
        "chromedriver"
    ):
        pytest.skip(
            "no chromium and chromedriver on PATH: apt-get install chromium chromium-driver"
        )
    out = _run(
        "benchmarks.console_load", "--namespaces", "2", "--per-namespace", "5", "--loads", "2"
    )
    rows = [line for line in out.splitlines() if line.startswith(("API calls", "console,"))]
    assert len(rows) == 4
    assert rows[0].split()[-1] == "1.0"  # the baseline against itself


def test_http_load_benchmark_runs(tmp_path: Path) -> None:
    out = _run(
        "benchmarks.http_load",
        *("--namespaces", "2", "--per-namespace", "100", "--clients", "4", "--seconds", "1"),
        *("--data-dir", str(tmp_path / "db")),
    )
    rates, cpu = out.split("CPU ms per recall")
    names = ("floor", "HTTP vector", "HTTP hybrid")
    legs = {
        line[:14].strip(): line[14:].split()
        for line in rates.splitlines()
        if line.startswith(names)
    }
    assert set(legs) == {"floor", "HTTP vector", "HTTP hybrid", "floor again"}
    for name, (qps, p50, p99, _, errors, ratio) in legs.items():
        assert float(qps) > 0, name
        assert 0 < float(p50) <= float(p99), name
        assert int(errors) == 0, name
        assert float(ratio) > 0, name
    assert max(float(legs[name][5]) for name in ("floor", "floor again")) == 1.0
    # CPU ms per recall: server, stand-in, PostgreSQL, load generator, ours, x floor, others.
    spent = {
        line[:14].strip(): [float(value) for value in line[14:].split()]
        for line in cpu.splitlines()
        if line.startswith(names)
    }
    assert set(spent) == set(legs)
    for name in ("HTTP vector", "HTTP hybrid"):
        server, standin, postgres, generator, ours = spent[name][:5]
        assert min(server, standin, postgres, generator) > 0, name
        assert ours == pytest.approx(server + standin + postgres + generator, abs=0.01), name
    # The floor never calls the server; the server's idle loop costs far less than a recall.
    assert spent["floor"][0] < spent["HTTP vector"][0], spent
    assert spent["floor"][5] == 1.0
    assert "x in process" in out
    # PostgreSQL's CPU per statement, on the database the run left.
    replayed = _run(
        "benchmarks.statement_cpu",
        *("--namespaces", "2", "--per-namespace", "100", "--queries", "20", "--rounds", "1"),
        *("--data-dir", str(tmp_path / "db")),
    )
    variants = ("floor", "pgrecall", "pgrecall generic", "pgrecall custom", "no pending count")
    figures = {
        line[:20].strip(): float(line[20:].split()[0])
        for line in replayed.split("EXPLAIN ANALYZE")[0].splitlines()
        if line.startswith("  ")
    }
    assert set(figures) == set(variants)
    assert min(figures.values()) >= 0
    assert replayed.count("Execution Time") == 2  # the floor's plan and the statement's
