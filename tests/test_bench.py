"""The benchmark's code path on tiny sizes (augmentation semantics: test_augment.py)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench import render, run_benchmark


@pytest.mark.slow
def test_benchmark_code_path_on_tiny_sizes(fer_csv, tmp_path):
    # The JAX row's trainer path is test_cli's JAX run; here it would only add a process.
    result = run_benchmark(
        data=fer_csv, arch="A", quick=True, out_dir=tmp_path, rounds=1, steps=3, backends=False
    )
    assert result["machine"]["tensorflow_allocator"] == "pooled (BFC)"
    assert result["allocator"]["malloc"]["median"] > 0
    assert result["allocator"]["pooled"]["median"] > 0
    for part in ("train", "eval"):
        for who in ("reference", "project"):
            assert result[part][who]["median"] > 0
        assert result[part]["ratio"] > 0
    assert result["data"]["parse_s"] > 0 and result["data"]["cache_load_s"] >= 0
    o = result["overhead"]
    assert o["wall_s"] >= o["fit_s"] > 0 and 0 <= o["pct_of_quick_trial"] <= 100
    written = json.loads((tmp_path / result["written_to"].split("/")[-1]).read_text())
    assert written["train"]["ratio"] == result["train"]["ratio"]
    table = render(result)
    assert "train, images/s" in table and "orchestrator overhead" in table
    ratios = [line.split() for line in table.splitlines() if line.startswith("ratio ")]
    assert [r[1:3] for r in ratios] == [
        ["train", "project/reference"],
        ["eval", "project/reference"],
        ["allocator", "pooled/malloc"],
    ]
    assert all(float(r[3]) > 0 for r in ratios)
