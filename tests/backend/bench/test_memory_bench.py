"""`pss bench memory` writes a complete synthetic artifacts dir in the chosen dtype, serves it in a fresh
process, prints the RSS after every step, and removes the dir."""

import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_bench_memory_small(tmp_path, dtype):
    result = subprocess.run([sys.executable, "-m", "backend.cli", "bench", "memory", "--samples", "40",
                             "--feature-dim", "16", "--queries", "2", "--dtype", dtype, "--dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    sizes = dict(re.findall(r"(\w+\.np[yz]) ([\d.,]+) MB", result.stdout))
    assert f"synthetic artifacts ({dtype})" in result.stdout and "profiles_std.npy" in sizes
    steps = re.findall(r"^(.+?)\s+RSS\s+([\d,]+) MB \(anon\s+([\d,]+), file\s+([\d,]+)\)", result.stdout, re.M)
    assert [s[0] for s in steps][:2] == ["open", "sample rows (detail, filters, profile)"] and len(steps) == 8
    assert all(int(rss.replace(",", "")) >= int(anon.replace(",", "")) for _, rss, anon, _ in steps)
    assert list(tmp_path.iterdir()) == []
