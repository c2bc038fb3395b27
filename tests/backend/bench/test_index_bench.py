"""`pss bench index` runs end to end on a small synthetic set and prints every method's latency."""

import re

from backend.cli import main


def test_bench_index_small(tmp_path, capsys):
    args = ["bench", "index", "--samples", "400", "--filters", "96", "--layers", "6", "--queries", "3",
            "--classes", "10", "--dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = {m.group(1).strip(): m.groups()[1:] for m in re.finditer(r"^(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+(\S+)$", out, re.M)}
    assert set(rows) == {"exact, full profile (96 filters)", "exact, layers 0:2 (32 filters)",
                         "exact, layers 4:6 (32 filters)", "faiss sq8, full profile"}
    assert all(float(p50) <= float(p95) for p50, p95, _ in rows.values())
    assert 0.0 <= float(rows["faiss sq8, full profile"][2]) <= 1.0
    assert list(tmp_path.iterdir()) == []  # the temporary data is removed
