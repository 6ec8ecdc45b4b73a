"""X-Cross Table 3 from a data-limited sweep: curves, significance and the minimum sizes, on
hand-built ranks files whose numbers are worked out below."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recplat.report.data_limited import data_limited_table, write_curves

N = 40  # test questions per repeat, 2 repeats


def write_run(root, sub, method, size, hits, reference=0.3):
    """A run whose per-question Hit@1 over (repeat 0, repeat 1) is `hits` (2N values of 0/1)."""
    d = root / sub / "test"
    d.mkdir(parents=True)
    hits = np.asarray(hits)
    users = [f"u{i}" for i in range(N)] * 2
    pq.write_table(pa.table({
        "user": users, "scope": ["Books"] * 2 * N, "position": [0] * 2 * N, "target_domain": ["Books"] * 2 * N,
        "rank": np.where(hits == 1, 1, 5).astype(np.int64), "repeat": ["0"] * N + ["1"] * N,
    }), d / "ranks.parquet")  # fmt: skip
    summary = {"recipe": "xcross", "method": method, "dataset": str(root / "data")}
    if method == "xcross":
        summary["zero_shot"] = [{"expert": "movies", "test": {"hit@1": reference}},
                                {"expert": "music", "test": {"hit@1": 0.9}}]
    return sub, {"variant": sub, "config": {"method": method, "data": {"train_size": size}}, "summary": summary}


def test_table3_numbers(tmp_path):
    rng = np.random.default_rng(0)
    runs = {}
    # size 20: X-Cross 0.5 vs LoRA 0.1 (clearly significant); size 40: 0.6 vs 0.55 (not significant)
    # reference (the expert ranked first on validation) = 0.3, not the better-on-test "music"
    plans = {20: (0.5, 0.1), 40: (0.6, 0.55)}
    for size, (px, pl) in plans.items():
        for method, p in (("xcross", px), ("lora", pl)):
            hits = np.zeros(2 * N, dtype=int)
            hits[rng.permutation(2 * N)[: int(round(p * 2 * N))]] = 1
            sub, entry = write_run(tmp_path, f"books-n{size}-{method}", method, size, hits)
            runs[sub] = entry
    table = data_limited_table({"runs": runs}, tmp_path)
    row = table["Books"]
    assert row["sizes"] == [20, 40]
    assert row["xcross"] == pytest.approx([0.5, 0.6]) and row["lora"] == pytest.approx([0.1, 0.55])
    assert row["reference"] == 0.3
    assert row["p"][0] < 1e-3 and row["p"][1] > 0.05
    assert row["max_size_xcross_significantly_better"] == 20
    assert row["min_size_xcross_beats_reference"] == 20
    assert row["min_size_lora_beats_reference"] == 40
    assert row["gap_percent"] == pytest.approx(50.0)  # 1 - 20 / 40
    files = write_curves(table, tmp_path)
    assert files == ["data_limited_Books.png"] and (tmp_path / files[0]).stat().st_size > 0


def test_runs_without_a_train_size_are_not_part_of_it(tmp_path):
    sub, entry = write_run(tmp_path, "books-xcross", "xcross", None, np.ones(2 * N))
    assert data_limited_table({"runs": {sub: entry}}, tmp_path) == {}
