"""sources/amazon2014.py on tests/fixtures/amazon2014 (gzip JSON reviews, Python-literal meta)."""

import json
import os

import pytest

from recplat.data.config import Amazon2014Source
from recplat.data.sources import ReadTask, plan_reads, run_read
from recplat.errors import DataError
from tests.data.sources.reading import read_tasks, rejects, rows


def source(fixtures_dir):
    return Amazon2014Source(kind="amazon2014", path=str(fixtures_dir / "amazon2014"), domains=["Beauty"])


def test_plan(fixtures_dir):
    assert [(t.role, t.path.rsplit("/", 1)[-1]) for t in plan_reads(source(fixtures_dir))] == [
        ("interactions", "reviews_Beauty_5.json.gz"), ("items", "meta_Beauty.json")]


def test_reviews(fixtures_dir, fast):
    (_, reviews), _ = read_tasks(source(fixtures_dir), fast)
    B = "Beauty"
    assert rows(reviews.interactions) == [
        ("BU1", "B00BEAUTY1", B, 1391040000, 5.0),
        ("BU1", "B00BEAUTY2", B, 1391040000, 4.0),  # 2014 times are whole days: equal timestamps
        ("BU1", "B00BEAUTY3", B, 1391126400, 3.0),
        ("BU2", "B00BEAUTY1", B, 1391040000, 4.0),
        ("BU2", "B00BEAUTY1", B, 1391040000, 4.0),  # exact duplicate
        ("BU2", "B00BEAUTY3", B, 1393632000, 5.0),
        ("BU3", "B00BEAUTY2", B, 1394000000, 2.0),
        ("BU3", "B00BEAUTY9", B, 1394200000, 3.0),  # no metadata
        ("BU3", "B00BEAUTY3", B, 1394300000, 4.0),
        ("BU4", "B00BEAUTY4", B, 1395000000, 5.0),
        ("BU4", "B00BEAUTY2", B, 1395000000, 1.0),
        ("BU1", "B00BEAUTY2", B, 1396000000, 5.0),
        ("BU2", "B00BEAUTY2", B, 1396000000, 4.0),
    ]
    file = "reviews_Beauty_5.json.gz"
    assert rejects(reviews) == [(file, 7, "missing_field:unixReviewTime"), (file, 9, "invalid_json")]


def test_meta_literals(fixtures_dir):
    _, (_, meta) = read_tasks(source(fixtures_dir))
    B = "Beauty"
    assert [r[:4] for r in rows(meta.items)] == [
        ("B00BEAUTY1", B, "Neutrogena Oil-Free Acne Wash &amp; Scrub", "Cleansers"),
        ("B00BEAUTY2", B, "L'Oreal Paris Voluminous Mascara", "Mascara"),
        ("B00BEAUTY3", B, "Burt&#39;s Bees &quot;Beeswax&quot; Lip Balm", "Lips"),
        ("B00BEAUTY4", B, None, "Beauty"),  # no title
        ("B00BEAUTY5", B, "nan", None),
        ("B00BEAUTY6", B, None, None),  # title None
        ("B00BEAUTY8", B, "", None),
    ]
    assert json.loads(meta.items.column("attributes")[0].as_py()) == {
        "brand": "Neutrogena", "price": 7.99, "categories": [["Beauty", "Skin Care", "Face", "Cleansers"]]}
    # line 6 is code, line 8 is JSON (null is not a Python literal)
    assert rejects(meta) == [("meta_Beauty.json", 6, "invalid_literal"), ("meta_Beauty.json", 8, "invalid_literal")]
    assert meta.rejects.column("text")[0].as_py() == "__import__('os').system('x')"


def test_literal_eval_never_runs_code(fixtures_dir, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    monkeypatch.setattr(os, "remove", lambda *a: calls.append(a))
    path = tmp_path / "meta_Evil.json"
    path.write_text(
        "{'asin': __import__('os').system('x'), 'title': 't'}\n"
        "{'asin': 'A1', 'title': (lambda: __import__('os').remove('y'))()}\n"
        "{'asin': 'A2', 'title': 'fine'}\n"
    )
    result = run_read(ReadTask("amazon2014", "items", str(path), "Evil"), strict=False)
    _, (_, fixture_meta) = read_tasks(source(fixtures_dir))
    assert calls == []
    assert rejects(result) == [("meta_Evil.json", 1, "invalid_literal"), ("meta_Evil.json", 2, "invalid_literal")]
    assert rows(result.items) == [("A2", "Evil", "fine", None, None)]
    assert fixture_meta.rejects.num_rows == 2


def test_strict_and_missing(fixtures_dir, tmp_path):
    with pytest.raises(DataError, match=r"amazon2014/reviews_Beauty_5\.json\.gz:7: missing_field:unixReviewTime$"):
        read_tasks(source(fixtures_dir), strict=True)
    meta = ReadTask("amazon2014", "items", str(fixtures_dir / "amazon2014" / "meta_Beauty.json"), "Beauty")
    with pytest.raises(DataError, match=r"amazon2014/meta_Beauty\.json:6: invalid_literal$"):
        run_read(meta, strict=True)
    with pytest.raises(DataError, match=rf"{tmp_path}/reviews_Beauty_5\.json \(or reviews_Beauty_5\.json\.gz\)"):
        plan_reads(Amazon2014Source(kind="amazon2014", path=str(tmp_path), domains=["Beauty"]))
