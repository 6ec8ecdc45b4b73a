"""sources/amazon2018.py on tests/fixtures/amazon2018_csv and amazon2018_reviews."""

import json

import pytest

from recplat.data.config import Amazon2018Source
from recplat.data.sources import plan_reads
from recplat.errors import DataError
from tests.data.sources.reading import read_tasks, rejects, rows


def csv_source(fixtures_dir, **kw):
    return Amazon2018Source(kind="amazon2018", path=str(fixtures_dir / "amazon2018_csv"),
                            domains=["Office_Products", "Prime_Pantry"], **kw)


def reviews_source(fixtures_dir):
    return Amazon2018Source(kind="amazon2018", path=str(fixtures_dir / "amazon2018_reviews"),
                            domains=["Musical_Instruments"], ratings="reviews")


def test_plan_per_domain_ratings_then_meta_plain_or_gz(fixtures_dir):
    tasks = plan_reads(csv_source(fixtures_dir))
    assert [(t.role, t.domain, t.path.rsplit("/", 1)[-1]) for t in tasks] == [
        ("interactions", "Office_Products", "Office_Products.csv"),
        ("items", "Office_Products", "meta_Office_Products.json.gz"),
        ("interactions", "Prime_Pantry", "Prime_Pantry.csv.gz"),
        ("items", "Prime_Pantry", "meta_Prime_Pantry.json"),
    ]


def test_ratings_csv_rows_and_rejects(fixtures_dir, fast):
    (_, office), _, (_, pantry), _ = read_tasks(csv_source(fixtures_dir), fast)
    O = "Office_Products"
    assert rows(office.interactions) == [
        ("A1USER", "B00OFFICE1", O, 1500000000, 5.0),
        ("A1USER", "B00OFFICE2", O, 1500003600, 4.0),  # same day as the previous
        ("A1USER", "B00OFFICE3", O, 1500090000, 3.0),
        ("A2USER", "B00OFFICE1", O, 1500000000, 5.0),  # equal timestamps
        ("A2USER", "B00OFFICE2", O, 1500000000, 2.0),
        ("A2USER", "B00OFFICE1", O, 1500000000, 5.0),  # exact duplicate: kept here, dedupe's job
        ("A3USER", "B00OFFICE9", O, 1500200000, 4.0),  # no metadata: kept here, titles' job
        ("A3USER", "B00OFFICE2", O, 1500400000, 5.0),
        ("A3USER", "B00OFFICE3", O, 1500500000, 4.0),
        ("A4USER", "B00OFFICE4", O, 1500600000, 3.0),
        ("A4USER", "B00OFFICE1", O, 1500700000, 4.0),
        ("A1USER", "B00OFFICE4", O, 1500800000, 2.0),
    ]
    assert rejects(office) == [("Office_Products.csv", 8, "bad_value:rating"), ("Office_Products.csv", 10, "bad_columns")]
    assert office.rejects.column("text").to_pylist() == ["B00OFFICE3,A3USER,five,1500300000", "B00OFFICE1,A3USER,1.0"]
    assert office.records == 14
    P = "Prime_Pantry"
    assert rows(pantry.interactions) == [  # a .gz file with a blank line (not a record)
        ("A1USER", "B00PANTRY1", P, 1500100000, 5.0),
        ("A1USER", "B00PANTRY2", P, 1500100000, 4.0),
        ("A2USER", "B00PANTRY1", P, 1500200000, 3.0),
        ("A2USER", "B00PANTRY2", P, 1500286400, 5.0),
        ("A5USER", "B00PANTRY3", P, 1500300000, 2.0),
        ("A5USER", "B00PANTRY1", P, 1500400000, 4.0),
        ("A1USER", "B00PANTRY3", P, 1500500000, 4.0),
    ]
    assert pantry.rejects.num_rows == 0 and pantry.records == 7


def test_meta_titles_raw_and_attributes(fixtures_dir, fast):
    _, (_, office_meta), _, (_, pantry_meta) = read_tasks(csv_source(fixtures_dir), fast)
    O = "Office_Products"
    got = [(r[0], r[1], r[2], r[3]) for r in rows(office_meta.items)]
    assert got == [
        ("B00OFFICE1", O, "Swingline Stapler &amp; 1000 Staples", "Staplers"),  # entities kept raw
        ("B00OFFICE2", O, "Pilot G2 &quot;Fine&quot; Gel Pens, 12 Pack", "Writing &amp; Correction"),
        ("B00OFFICE3", O, "Moleskine Writer&#39;s   Notebook", "Office Products"),  # no category: main_cat
        ("B00OFFICE4", O, "", None),
        ("B00OFFICE5", O, "nan", "Office Products"),
        ("B00OFFICE6", O, None, None),  # no title key
        ("B00OFFICE2", O, "Pilot G2 Pens (second meta row)", None),  # duplicate: titles' job
    ]
    assert json.loads(office_meta.items.column("attributes")[0].as_py()) == {
        "brand": "Swingline", "main_cat": "Office Products", "price": "$12.99",
        "category": ["Office Products", "Office &amp; School Supplies", "Staplers"],
    }
    assert rejects(office_meta) == [("meta_Office_Products.json.gz", 8, "invalid_json")]
    assert [r[2] for r in rows(pantry_meta.items)] == [
        "Quaker Old Fashioned Oats, 42 oz", "Folgers Coffee &amp; Filters Bundle", "Barilla Penne Rigate"]
    assert pantry_meta.rejects.num_rows == 0


def test_reviews_json_lines(fixtures_dir, fast):
    (_, reviews), (_, meta) = read_tasks(reviews_source(fixtures_dir), fast)
    M = "Musical_Instruments"
    assert rows(reviews.interactions) == [
        ("AR1", "B00MUSIC01", M, 1500000000, 5.0),
        ("AR1", "B00MUSIC02", M, 1500000000, 4.0),
        ("AR1", "B00MUSIC03", M, 1500050000, 3.0),
        ("AR2", "B00MUSIC01", M, 1501000000, 4.0),
        ("AR2", "B00MUSIC01", M, 1501000000, 4.0),
        ("AR2", "B00MUSIC03", M, 1501100000, 5.0),
        ("AR3", "B00MUSIC01", M, 1502000300, 2.0),
        ("AR3", "B00MUSIC04", M, 1502000400, 3.0),
        ("AR3", "B00MUSIC02", M, 1502086400, 5.0),
        ("AR4", "B00MUSIC03", M, 1503000000, 4.0),
        ("AR4", "B00MUSIC05", M, 1503000000, 1.0),
        ("AR4", "B00MUSIC02", M, 1503100000, 3.0),
        ("AR1", "B00MUSIC02", M, 1500200000, 4.0),
        ("AR1", "B00MUSIC01", M, 1500300000, 5.0),
        ("AR2", "B00MUSIC02", M, 1501200000, 3.0),
        ("AR2", "B00MUSIC01", M, 1501300000, 4.0),
    ]
    file = "Musical_Instruments_5.json"
    assert rejects(reviews) == [(file, 7, "bad_value:overall"), (file, 8, "invalid_json"), (file, 9, "missing_field:overall")]
    assert [(r[0], r[2]) for r in rows(meta.items)] == [
        ("B00MUSIC01", "Fender 351 Premium Celluloid Picks &amp; Holder, 12 Pack"),
        ("B00MUSIC02", "D&#39;Addario EXL110 &quot;Regular Light&quot; Strings"),
        ("B00MUSIC03", "  Snark   SN5X Clip-On Tuner \n"),  # whitespace cleaned later, not here
        ("B00MUSIC05", "nan"),
        ("B00MUSIC06", None),
        ("B00MUSIC01", "Fender Picks (duplicate meta row)"),
    ]
    assert meta.rejects.num_rows == 0


def test_strict_names_file_and_line(fixtures_dir):
    with pytest.raises(DataError, match=r"amazon2018_csv/Office_Products\.csv:8: bad_value:rating$"):
        read_tasks(csv_source(fixtures_dir), strict=True)
    with pytest.raises(DataError, match=r"Musical_Instruments_5\.json:7: bad_value:overall$"):
        read_tasks(reviews_source(fixtures_dir), strict=True)


def test_missing_files_name_the_path(fixtures_dir, tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path}/Office_Products\.csv \(or Office_Products\.csv\.gz\): ratings CSV"):
        plan_reads(Amazon2018Source(kind="amazon2018", path=str(tmp_path), domains=["Office_Products"]))
    with pytest.raises(DataError, match=r"amazon2018_csv/Toys_5\.json .*5-core reviews of domain Toys"):
        plan_reads(Amazon2018Source(kind="amazon2018", path=str(fixtures_dir / "amazon2018_csv"),
                                    domains=["Toys"], ratings="reviews"))


def test_hex_timestamp_rejected_by_both_paths(tmp_path, fast):
    """pyarrow's int64 parser reads "0x10" as 16; the line parser (Python's int) refuses it. The
    whole-file path must not accept what the line parser rejects."""
    (tmp_path / "Toys.csv").write_text("i1,u1,5.0,1500000000\ni2,u1,4.0,0x10\ni3,u1,3.0, 7\n")
    (tmp_path / "meta_Toys.json").write_text('{"asin": "i1", "title": "t"}\n')
    (_, inter), _ = read_tasks(Amazon2018Source(kind="amazon2018", path=str(tmp_path), domains=["Toys"]), fast)
    assert rows(inter.interactions) == [("u1", "i1", "Toys", 1500000000, 5.0), ("u1", "i3", "Toys", 7, 3.0)]
    assert rejects(inter) == [("Toys.csv", 2, "bad_value:timestamp")]
