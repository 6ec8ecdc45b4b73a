"""evaluate_ranks rows by hand; result files written atomically and read back."""

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recplat.data import schema
from recplat.errors import DataError
from recplat.eval.results import METRICS_FILE, RANKS_FILE, evaluate_ranks, format_table, load_results

DOMAINS = ["Arts", "Arts", "Office", "Office", "Office"]
RANKS = np.array([1, 3, 2, 12, 1])
SEGMENT = ["same", "diff", "same", "mix", "diff"]


def examples() -> pa.Table:
    n = len(DOMAINS)
    return pa.table({"user": ["a", "b", "c", "d", "e"], "scope": [schema.MIXED_SCOPE] * n, "split": ["test"] * n,
                     "position": pa.array([4, 5, 6, 7, 8], pa.int32()),
                     "history": pa.array([[1]] * n, pa.list_(pa.int32())), "target": pa.array([1] * n, pa.int32()),
                     "target_domain": DOMAINS, "candidates": pa.array([[2]] * n, pa.list_(pa.int32()))})


def test_rows_by_hand():
    res = evaluate_ranks(examples(), RANKS, ["recall@1", "ndcg@10", "mrr"], segments={"history_domains": SEGMENT})
    assert res.metrics == ["recall@1", "ndcg@10", "mrr"]
    assert [(r["group"], r["value"], r["n"]) for r in res.rows] == [
        ("all", "all", 5), ("target_domain", "Arts", 2), ("target_domain", "Office", 3),
        ("history_domains", "same", 2), ("history_domains", "mix", 1), ("history_domains", "diff", 2),
    ]
    assert res.overall == pytest.approx({"recall@1": 0.4, "ndcg@10": (1 + 0.5 + 1 / math.log2(3) + 0 + 1) / 5,
                                        "mrr": (1 + 1 / 3 + 0.5 + 1 / 12 + 1) / 5})
    assert res.row("target_domain", "Arts")["ndcg@10"] == pytest.approx((1 + 0.5) / 2)
    assert res.row("history_domains", "mix")["mrr"] == pytest.approx(1 / 12)
    with pytest.raises(KeyError, match="no result row"):
        res.row("target_domain", "Pantry")


def test_write_and_read_back(tmp_path: Path):
    res = evaluate_ranks(examples(), RANKS, ["hit@1", "hit@3", "hit@10", "mrr"], segments={"seg": SEGMENT})
    ranks_path, metrics_path = res.write(tmp_path / "eval" / "test")
    assert ranks_path.name == RANKS_FILE and metrics_path.name == METRICS_FILE
    # atomic writes leave no temporary siblings behind
    assert sorted(p.name for p in ranks_path.parent.iterdir()) == [METRICS_FILE, RANKS_FILE]
    table = pq.read_table(ranks_path)
    assert table.column_names == ["user", "scope", "position", "split", "target_domain", "rank", "seg"]
    assert table["rank"].to_pylist() == RANKS.tolist() and table["seg"].to_pylist() == SEGMENT
    assert json.loads(metrics_path.read_text())["n_examples"] == 5
    back = load_results(ranks_path.parent)
    assert back.rows == res.rows and back.metrics == res.metrics and back.per_example.equals(res.per_example)
    with pytest.raises(DataError, match="no complete evaluation"):
        load_results(tmp_path / "missing")


def test_format_table_is_fixed_width():
    res = evaluate_ranks(examples(), RANKS, ["hit@1", "mrr"])
    text = format_table(res)
    lines = text.splitlines()
    assert lines[0].split() == ["group", "value", "n", "hit@1", "(%)", "mrr", "(%)"]
    assert lines[2].split() == ["all", "all", "5", "40.00", f"{100 * (1 + 1/3 + 0.5 + 1/12 + 1) / 5:.2f}"]
    assert lines[3].split()[:3] == ["target_domain", "Arts", "2"]
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule share the width
    assert res.format_table() == text
    assert format_table(res, percent=False).splitlines()[2].split()[3] == "0.40"


def test_errors_name_the_problem():
    ex = examples()
    with pytest.raises(DataError, match="4 ranks for 5 examples"):
        evaluate_ranks(ex, RANKS[:4], ["mrr"])
    with pytest.raises(DataError, match=">= 1"):
        evaluate_ranks(ex, np.array([0, 1, 1, 1, 1]), ["mrr"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['domain'\]"):
        evaluate_ranks(ex, RANKS, ["mrr"], by=["domain"])
    with pytest.raises(DataError, match="segment 'seg' has 2 labels"):
        evaluate_ranks(ex, RANKS, ["mrr"], segments={"seg": ["a", "b"]})
    with pytest.raises(DataError, match="collides"):
        evaluate_ranks(ex, RANKS, ["mrr"], segments={"rank": SEGMENT})
