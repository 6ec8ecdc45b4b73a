"""sources/recbole.py: the tests/fixtures/recbole atomic files, and the ml-100k example inside the
installed recbole package (read in place; the package is never imported)."""

import importlib.util
import json
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from recplat.data.config import RecBoleSource
from recplat.data.sources import plan_reads
from recplat.errors import DataError
from tests.data.sources.reading import read_tasks, rejects, rows


def source(fixtures_dir, **kw):
    return RecBoleSource(kind="recbole", path=str(fixtures_dir / "recbole"), dataset="tiny", **kw)


def test_fixture_interactions(fixtures_dir, fast):
    (_, inter), _ = read_tasks(source(fixtures_dir), fast)
    M = "Movies"
    assert rows(inter.interactions) == [
        ("u1", "i1", M, 881250949, 5.0),
        ("u1", "i2", M, 881250949, 3.0),  # timestamp:float 881250949.7 truncated; equal timestamps
        ("u1", "i3", M, 881340000, 4.0),
        ("u2", "i1", M, 891717742, 4.0),
        ("u2", "i1", M, 891717742, 4.0),  # exact duplicate
        ("u2", "i3", M, 891717800, 2.0),
        ("u3", "i2", M, 878887117, 4.0),
        ("u3", "i4", M, 878887200, 5.0),
        ("u3", "i9", M, 878887300, 3.0),  # no item row
        ("u4", "i3", M, 880000000, 4.0),
        ("u4", "i4", M, 880000000, 3.0),
        ("u2", "i2", M, 891717900, 5.0),
        ("u4", "i1", M, 880000100, 5.0),
        ("u4", "i2", M, 880086400, 4.0),
        ("u1", "i1", M, 881400000, 4.0),
    ]
    # line 1 is the typed header
    assert rejects(inter) == [("tiny.inter", 8, "bad_value:rating"), ("tiny.inter", 9, "bad_columns")]


def test_fixture_items(fixtures_dir):
    _, (_, items) = read_tasks(source(fixtures_dir))
    M = "Movies"
    assert [r[:4] for r in rows(items.items)] == [
        ("i1", M, "Toy Story", "Animation|Children's|Comedy"),
        ("i2", M, "Cats &amp; Dogs", "Comedy"),
        ("i3", M, "Café Society", None),
        ("i4", M, "nan", "Drama"),
        ("i5", M, "", "Drama"),
    ]
    assert json.loads(items.items.column("attributes")[0].as_py()) == {
        "release_year": "1995", "class": ["Animation", "Children's", "Comedy"]}
    assert rejects(items) == [("tiny.item", 7, "bad_columns")]


def test_title_field_and_header_errors(fixtures_dir, tmp_path):
    _, (_, items) = read_tasks(source(fixtures_dir, title_field="release_year"))
    assert items.items.column("title").to_pylist()[:2] == ["1995", "2001"]
    with pytest.raises(DataError, match=r"tiny\.item:1: header lacks field\(s\) name"):
        read_tasks(source(fixtures_dir, title_field="name"))
    (tmp_path / "x.inter").write_text("user_id:token\titem_id\ttimestamp:float\nu\ti\t1\n")
    (tmp_path / "x.item").write_text("item_id:token\tgenre:token\ni\tDrama\n")
    with pytest.raises(DataError, match=r"x\.inter:1: header column 'item_id' is not name:type"):
        read_tasks(RecBoleSource(kind="recbole", path=str(tmp_path), dataset="x"))
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\nu\ti\n")
    with pytest.raises(DataError, match=r"x\.inter:1: header lacks field\(s\) timestamp"):
        read_tasks(RecBoleSource(kind="recbole", path=str(tmp_path), dataset="x"))
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\n")
    with pytest.raises(DataError, match=r"x\.item:1: no title field \(movie_title, title, item_name\)"):
        read_tasks(RecBoleSource(kind="recbole", path=str(tmp_path), dataset="x"))
    # no rating column: null ratings
    (tmp_path / "x.item").write_text("item_id:token\ttitle:token_seq\ni\tA title\n")
    (inter_task, inter), (_, item) = read_tasks(RecBoleSource(kind="recbole", path=str(tmp_path), dataset="x"))
    assert rows(inter.interactions) == [("u", "i", "Movies", 1, None)]
    assert rows(item.items) == [("i", "Movies", "A title", None, None)]


def test_data_path_layout_and_missing(fixtures_dir, tmp_path):
    # RecBole's own layout: <data_path>/<dataset>/<dataset>.inter
    nested = tmp_path / "tiny"
    nested.mkdir()
    for name in ("tiny.inter", "tiny.item"):
        (nested / name).write_bytes((fixtures_dir / "recbole" / name).read_bytes())
    tasks = plan_reads(RecBoleSource(kind="recbole", path=str(tmp_path), dataset="tiny"))
    assert [t.path for t in tasks] == [str(nested / "tiny.inter"), str(nested / "tiny.item")]
    with pytest.raises(DataError, match=rf"{tmp_path}/other\.inter .*RecBole interactions of other not found"):
        plan_reads(RecBoleSource(kind="recbole", path=str(tmp_path), dataset="other"))


def test_out_of_range_float_timestamp_is_a_reject(tmp_path, fast):
    """A float timestamp beyond int64 used to crash the whole-file path (ArrowInvalid on the cast)."""
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1.5\nu\tj\t2.5e30\n")
    (tmp_path / "x.item").write_text("item_id:token\ttitle:token_seq\ni\tA\n")
    (_, inter), _ = read_tasks(RecBoleSource(kind="recbole", path=str(tmp_path), dataset="x"), fast)
    assert rows(inter.interactions) == [("u", "i", "Movies", 1, None)]
    assert rejects(inter) == [("x.inter", 3, "bad_value:timestamp")]


def test_strict(fixtures_dir):
    with pytest.raises(DataError, match=r"recbole/tiny\.inter:8: bad_value:rating$"):
        read_tasks(source(fixtures_dir), strict=True)


def test_installed_ml100k_read_in_place():
    before = set(sys.modules)
    tasks = plan_reads(RecBoleSource(kind="recbole"))
    package = Path(importlib.util.find_spec("recbole").origin).parent
    assert [t.path for t in tasks] == [
        str(package / "dataset_example" / "ml-100k" / "ml-100k.inter"),
        str(package / "dataset_example" / "ml-100k" / "ml-100k.item"),
    ]
    (_, inter), (_, items) = read_tasks(RecBoleSource(kind="recbole"))
    assert "recbole" not in set(sys.modules) - before  # found, never imported
    table = inter.interactions
    assert table.num_rows == 100_000 and inter.rejects.num_rows == 0
    assert len(pc.unique(table["user"])) == 943 and len(pc.unique(table["item"])) == 1682
    assert rows(table.slice(0, 2)) == [("196", "242", "Movies", 881250949, 3.0), ("186", "302", "Movies", 891717742, 3.0)]
    assert items.items.num_rows == 1682 and items.rejects.num_rows == 0
    titles = items.items["title"]
    assert titles.null_count == 0 and not pc.any(pc.equal(titles, "")).as_py()
    assert rows(items.items.slice(0, 1))[0][:4] == ("1", "Movies", "Toy Story", "Animation|Children's|Comedy")
    # every interaction's item has a row
    assert pc.all(pc.is_in(table["item"], value_set=items.items["item"])).as_py()
