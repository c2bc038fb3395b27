"""`pss bench index` runs end to end on a small synthetic set, checks exactness and prints every method's latency."""

import re

import pytest

from backend.cli import main


def test_bench_index_small(tmp_path, capsys):
    args = ["bench", "index", "--samples", "400", "--filters", "1024", "--layers", "6", "--queries", "3",
            "--classes", "10", "--dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = {m.group(1).strip(): m.groups()[1:] for m in
            re.finditer(r"^(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+([\d.]+)\s+(\d+)\s+(\S+)$", out, re.M)}
    ranges = ["full profile (1,024 filters)", "layers 0:2 (341 filters)", "layers 4:6 (341 filters)"]
    assert set(rows) == {f"{m}, {r}" for m in ("float32 scan", "exact") for r in ranges} | {"faiss sq8, full profile"}
    assert all(float(p50) <= float(p95) for p50, p95, *_ in rows.values())
    assert 0.0 <= float(rows["faiss sq8, full profile"][-1]) <= 1.0
    for r in ranges:  # both exact methods answered every query alike, and the codes read less (with ~300 bytes
        # of side arrays a row, that holds for profiles longer than a few hundred filters)
        assert f"exact vs float32 scan, {r}: 3/3 queries with the same top 10" in out
    assert float(rows["exact, full profile (1,024 filters)"][3]) < float(rows["float32 scan, full profile (1,024 filters)"][3])
    assert list(tmp_path.iterdir()) == []  # the temporary data is removed


@pytest.mark.parametrize("command", ["index", "memory"])
def test_bench_refuses_a_missing_dir_in_one_line(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", command, "--dir", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "is not an existing directory" in capsys.readouterr().err
