"""sources/table.py: the tests/fixtures/table CSV files, and Parquet tables written here."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recplat.data.config import TableSource
from recplat.data.sources import plan_reads
from recplat.errors import DataError
from tests.data.sources.reading import read_tasks, rejects, rows

MAPPING = {"user": "uid", "item": "iid", "rating": "stars", "timestamp": "ts_ms", "domain": "site",
           "title": "name", "category": "genre"}


def csv_source(fixtures_dir, **kw):
    folder = fixtures_dir / "table"
    kw = {"columns": MAPPING, "timestamp_unit": "ms", **kw}
    return TableSource(kind="table", interactions=str(folder / "interactions.csv"), items=str(folder / "items.csv"), **kw)


def test_plan_maps_columns(fixtures_dir):
    inter, items = plan_reads(csv_source(fixtures_dir))
    assert (inter.role, inter.domain, inter.options) == (
        "interactions", "",
        {"columns": {"user": "uid", "item": "iid", "timestamp": "ts_ms", "rating": "stars", "domain": "site"},
         "timestamp_unit": "ms"},
    )
    assert items.options["columns"] == {"item": "iid", "domain": "site", "title": "name", "category": "genre"}


def test_csv_interactions(fixtures_dir, fast):
    (_, inter), _ = read_tasks(csv_source(fixtures_dir), fast)
    B, M = "Books", "Movies"
    assert rows(inter.interactions) == [
        ("t1", "book1", B, 1600000000, 5.0),
        ("t1", "book2", B, 1600000000, 4.0),  # ...000999 ms: same second
        ("t1", "film1", M, 1600090000, 3.0),
        ("t2", "book1", B, 1600100000, 4.0),
        ("t2", "book1", B, 1600100000, 4.0),  # exact duplicate
        ("t2", "film1", M, 1600100000, 5.0),  # equal timestamps across domains
        ("t2", "film2", M, 1600200000, 2.0),
        ("t3", "film2", M, 1600400000, 3.0),
        ("t3", "book9", B, 1600500000, 5.0),  # no item row
        ("t3", "book2", B, 1600600000, 1.0),
        ("t4", "film2", M, 1600700000, 4.0),
        ("t4", "book1", B, 1600700000, 2.0),
        ("t3", "book1", B, 1600650000, 3.0),
        ("t4", "film1", M, 1600800000, 5.0),
        ("t4", "book2", B, 1600900000, 4.0),
        ("t1", "book1", B, 1601000000, 5.0),
    ]
    # line 1 is the header; the file's own column names in the reasons
    assert rejects(inter) == [("interactions.csv", 9, "bad_value:stars"), ("interactions.csv", 10, "bad_columns")]


def test_csv_items(fixtures_dir):
    _, (_, items) = read_tasks(csv_source(fixtures_dir))
    assert rows(items.items) == [
        ("book1", "Books", "Dune, 50th Anniversary Edition", "Science Fiction", '{"price": "9.99"}'),
        ("book2", "Books", 'The "Hobbit" &amp; Other Tales', "Fantasy", None),
        ("film1", "Movies", "Amélie\n(2001)", "Comedy", '{"price": "3.99"}'),  # a quoted newline: lines 4-5
        ("film2", "Movies", "nan", "Drama", '{"price": "1.99"}'),
        ("film3", "Movies", "", "Drama", None),
    ]
    assert rejects(items) == [("items.csv", 8, "bad_columns")]  # the record after the 2-line one
    assert items.rejects.column("text").to_pylist() == ["book3,Books,Broken row,with,too,many"]


def test_strict(fixtures_dir):
    with pytest.raises(DataError, match=r"table/interactions\.csv:9: bad_value:stars$"):
        read_tasks(csv_source(fixtures_dir), strict=True)


def test_constant_domain_and_seconds(tmp_path):
    (tmp_path / "i.tsv").write_text("user\titem\ttimestamp\nu1\tx\t100.9\nu1\ty\t200\n")
    (tmp_path / "m.tsv").write_text("\ufeffitem\ttitle\tyear\nx\tX movie\t1999\ny\tY movie\t\n")
    src = TableSource(kind="table", interactions=str(tmp_path / "i.tsv"), items=str(tmp_path / "m.tsv"), domain="Films")
    for fast in (True, False):
        (_, inter), (_, items) = read_tasks(src, fast)
        assert rows(inter.interactions) == [("u1", "x", "Films", 100, None), ("u1", "y", "Films", 200, None)]
        assert rows(items.items) == [("x", "Films", "X movie", None, '{"year": "1999"}'), ("y", "Films", "Y movie", None, None)]


def write_parquet(path, columns: dict, schema=None):
    pq.write_table(pa.table(columns, schema=schema), path)


def parquet_source(tmp_path, **kw):
    interactions = {
        "customer": pa.array([7, 7, 8, 8, 9, None], pa.int64()),  # integer ids: taken as digits
        "product": ["a", "b", "a", "", "b", "a"],
        "when": pa.array([1_600_000_000_999, 1_600_000_001_000, 1_600_000_002_000, 5, 6, 7], pa.timestamp("ms")),
        "stars": pa.array([5.0, None, 3.0, 4.0, float("nan"), 1.0], pa.float32()),
        "shop": pa.array(["Books", "Books", "Toys", "Toys", "Toys", "Toys"]).dictionary_encode(),
    }
    write_parquet(tmp_path / "inter.parquet", interactions)
    items = {
        "product": ["a", "b", "c", None],
        "shop": ["Books", "Books", "Toys", "Toys"],
        "label": ["A &amp; B", None, "nan", "orphan"],
        "tags": [["x", "y"], [], None, None],
        "pages": [100, None, 3, 4],
    }
    write_parquet(tmp_path / "items.parquet", items)
    mapping = {"user": "customer", "item": "product", "timestamp": "when", "rating": "stars", "domain": "shop",
               "title": "label"}
    return TableSource(kind="table", interactions=str(tmp_path / "inter.parquet"), items=str(tmp_path / "items.parquet"),
                       columns=mapping, **kw)


def test_parquet_column_mapping(tmp_path):
    (_, inter), (_, items) = read_tasks(parquet_source(tmp_path))
    assert rows(inter.interactions) == [
        ("7", "a", "Books", 1_600_000_000, 5.0),  # Arrow timestamps: seconds whatever the unit
        ("8", "a", "Toys", 1_600_000_002, 3.0),
    ]
    # Parquet rejects are numbered by row (1-based)
    assert rejects(inter) == [
        ("inter.parquet", 2, "missing_field:stars"),
        ("inter.parquet", 4, "missing_field:product"),
        ("inter.parquet", 5, "bad_value:stars"),
        ("inter.parquet", 6, "missing_field:customer"),
    ]
    assert json.loads(inter.rejects.column("text")[0].as_py())["customer"] == 7
    assert rows(items.items) == [
        ("a", "Books", "A &amp; B", None, '{"pages": 100, "tags": ["x", "y"]}'),
        ("b", "Books", None, None, None),
        ("c", "Toys", "nan", None, '{"pages": 3}'),
    ]
    assert rejects(items) == [("items.parquet", 4, "missing_field:product")]
    with pytest.raises(DataError, match=r"inter\.parquet:2: missing_field:stars$"):
        read_tasks(parquet_source(tmp_path), strict=True)


def test_parquet_numbers_as_strings_and_folder_of_parts(tmp_path):
    folder = tmp_path / "inter"
    folder.mkdir()
    write_parquet(folder / "part-0.parquet", {"user": ["u"], "item": ["a"], "timestamp": ["1600000000123"], "rating": ["4"]})
    write_parquet(folder / "part-1.parquet", {"user": ["u", "v"], "item": ["b", "c"], "timestamp": [1600000001000.0, 2.5e30],
                                              "rating": ["x", "3.5"]})
    write_parquet(tmp_path / "items.parquet", {"item": ["a", "b"], "title": ["A", "B"]})
    src = TableSource(kind="table", interactions=str(folder), items=str(tmp_path / "items.parquet"), domain="D",
                      timestamp_unit="ms")
    tasks = plan_reads(src)
    assert [t.path.rsplit("/", 1)[-1] for t in tasks] == ["part-0.parquet", "part-1.parquet", "items.parquet"]
    (_, part0), (_, part1), _ = read_tasks(src)
    assert rows(part0.interactions) == [("u", "a", "D", 1600000000, 4.0)]
    assert rows(part1.interactions) == []
    assert rejects(part1) == [("part-1.parquet", 1, "bad_value:rating"), ("part-1.parquet", 2, "bad_value:timestamp")]


def test_config_errors_name_the_file(fixtures_dir, tmp_path):
    with pytest.raises(DataError, match=r"interactions\.csv: no column 'user' \(required\); the file has uid, iid"):
        plan_reads(csv_source(fixtures_dir, columns={}))
    with pytest.raises(DataError, match=r"interactions\.csv: no column 'rate' \(mapped from 'rating'\)"):
        plan_reads(csv_source(fixtures_dir, columns={**MAPPING, "rating": "rate"}))
    no_domain = {k: v for k, v in MAPPING.items() if k != "domain"}
    with pytest.raises(DataError, match=r"no column 'domain' \(required\) \(or set the source's domain\)"):
        plan_reads(csv_source(fixtures_dir, columns=no_domain))
    with pytest.raises(DataError, match=rf"^{tmp_path}/nope\.parquet: interactions table not found$"):
        plan_reads(TableSource(kind="table", interactions=str(tmp_path / "nope.parquet"), items=str(tmp_path / "x.csv")))
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(DataError, match=r"data\.json: unknown table format"):
        plan_reads(TableSource(kind="table", interactions=str(tmp_path / "data.json"), items=str(tmp_path / "x.csv")))


def test_csv_items_not_utf8_and_missing_id(tmp_path):
    (tmp_path / "i.csv").write_text("user,item,timestamp\nu,a,1\n")
    (tmp_path / "m.csv").write_bytes(b"item,title\na,Caf\xe9\n,No id\nb,B\n")
    src = TableSource(kind="table", interactions=str(tmp_path / "i.csv"), items=str(tmp_path / "m.csv"), domain="D")
    _, (_, items) = read_tasks(src)
    assert rows(items.items) == [("b", "D", "B", None, None)]
    assert rejects(items) == [("m.csv", 2, "bad_encoding"), ("m.csv", 3, "missing_field:item")]
    assert items.rejects.column("text").to_pylist() == ["a,Caf\ufffd", ",No id"]
    with pytest.raises(DataError, match=r"m\.csv:2: bad_encoding$"):
        read_tasks(src, strict=True)
