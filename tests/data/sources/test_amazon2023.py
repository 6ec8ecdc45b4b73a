"""sources/amazon2023.py on tests/fixtures/amazon2023: millisecond timestamps, parent_asin items."""

import json

import pytest

from recplat.data.config import Amazon2023Source
from recplat.data.sources import plan_reads
from recplat.errors import DataError
from tests.data.sources.reading import read_tasks, rejects, rows


def source(fixtures_dir):
    return Amazon2023Source(kind="amazon2023", path=str(fixtures_dir / "amazon2023"),
                            domains=["All_Beauty", "Video_Games"])


def test_plan(fixtures_dir):
    assert [(t.role, t.domain, t.path.rsplit("/", 1)[-1]) for t in plan_reads(source(fixtures_dir))] == [
        ("interactions", "All_Beauty", "All_Beauty.jsonl"),
        ("items", "All_Beauty", "meta_All_Beauty.jsonl.gz"),
        ("interactions", "Video_Games", "Video_Games.jsonl.gz"),
        ("items", "Video_Games", "meta_Video_Games.jsonl"),
    ]


def test_reviews_ms_floor_divided_item_is_parent_asin(fixtures_dir, fast):
    (_, beauty), _, (_, games), _ = read_tasks(source(fixtures_dir), fast)
    B, G = "All_Beauty", "Video_Games"
    assert rows(beauty.interactions) == [
        ("AGUSER1", "B0BEAUTYP1", B, 1588687728001 // 1000, 5.0),  # asin B0BEAUTYA1, a variant
        ("AGUSER1", "B0BEAUTYP2", B, 1588687728999 // 1000, 4.0),  # same second after flooring
        ("AGUSER1", "B0BEAUTYP3", B, 1588700000, 3.0),
        ("AGUSER2", "B0BEAUTYP1", B, 1600000000, 5.0),
        ("AGUSER2", "B0BEAUTYP1", B, 1600000000, 5.0),  # exact duplicate
        ("AGUSER2", "B0BEAUTYP2", B, 1600000100, 2.0),
        ("AGUSER3", "B0BEAUTYP3", B, 1600000500, 4.0),
        ("AGUSER3", "B0BEAUTYP9", B, 1600000600, 1.0),  # no metadata
        ("AGUSER3", "B0BEAUTYP1", B, 1600000700, 5.0),
    ]
    assert rows(beauty.interactions)[0][3] == 1588687728
    file = "All_Beauty.jsonl"
    assert rejects(beauty) == [
        (file, 7, "bad_value:timestamp"),  # a fractional millisecond timestamp
        (file, 8, "missing_field:rating"),  # "rating": null
        (file, 9, "invalid_json"),  # truncated line
    ]
    assert rows(games.interactions) == [
        ("AGUSER1", "B0GAMESP1", G, 1610000000, 5.0),
        ("AGUSER1", "B0GAMESP2", G, 1610000000, 4.0),
        ("AGUSER2", "B0GAMESP1", G, 1610086400, 3.0),
        ("AGUSER2", "B0GAMESP2", G, 1610090000, 5.0),
        ("AGUSER4", "B0GAMESP3", G, 1620000000, 4.0),
        ("AGUSER4", "B0GAMESP1", G, 1620000001, 2.0),
    ]
    assert games.rejects.num_rows == 0


def test_meta(fixtures_dir, fast):
    _, (_, beauty), _, (_, games) = read_tasks(source(fixtures_dir), fast)
    assert [r[:4] for r in rows(beauty.items)] == [
        ("B0BEAUTYP1", "All_Beauty", "Howard LC0008 Leather Conditioner &amp; Cleaner, 8oz", "All Beauty"),
        ("B0BEAUTYP2", "All_Beauty", "Yes To Tomatoes &quot;Detoxifying&quot; Charcoal Mask", "Face"),
        ("B0BEAUTYP3", "All_Beauty", "Hair Ties &#39;No Crease&#39;, 20 Pack", "All Beauty"),
        ("B0BEAUTYP4", "All_Beauty", "", "All Beauty"),
    ]
    # price mixes null, numbers and strings in the dump: never read
    assert json.loads(beauty.items.column("attributes")[1].as_py()) == {
        "categories": ["Beauty & Personal Care", "Skin Care", "Face"], "main_category": "All Beauty", "store": "Yes To"}
    assert [r[:4] for r in rows(games.items)] == [
        ("B0GAMESP1", "Video_Games", "Mario Kart 8 Deluxe", "Games"),
        ("B0GAMESP2", "Video_Games", "Xbox Wireless Controller", "Controllers"),
        ("B0GAMESP3", "Video_Games", "NaN", None),
    ]
    assert beauty.rejects.num_rows == games.rejects.num_rows == 0


def test_strict_and_missing(fixtures_dir, tmp_path):
    with pytest.raises(DataError, match=r"amazon2023/All_Beauty\.jsonl:7: bad_value:timestamp$"):
        read_tasks(source(fixtures_dir), strict=True)
    with pytest.raises(DataError, match=rf"{tmp_path}/All_Beauty\.jsonl \(or All_Beauty\.jsonl\.gz\): reviews"):
        plan_reads(Amazon2023Source(kind="amazon2023", path=str(tmp_path), domains=["All_Beauty"]))
