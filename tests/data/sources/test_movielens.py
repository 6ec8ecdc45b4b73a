"""sources/movielens.py on tests/fixtures/ml-100k, ml-1m (latin-1) and ml-latest-small (quoted CSV)."""

import json

import pytest

from recplat.data.config import MovieLensSource
from recplat.data.sources import plan_reads
from recplat.errors import DataError
from tests.data.sources.reading import read_tasks, rejects, rows


def source(fixtures_dir, variant, **kw):
    return MovieLensSource(kind="movielens", path=str(fixtures_dir / variant), variant=variant, **kw)


def test_plan(fixtures_dir):
    tasks = plan_reads(source(fixtures_dir, "ml-1m", domain="Films"))
    assert [(t.role, t.domain, t.path.rsplit("/", 1)[-1], t.options) for t in tasks] == [
        ("interactions", "Films", "ratings.dat", {"variant": "ml-1m"}),
        ("items", "Films", "movies.dat", {"variant": "ml-1m"}),
    ]


def test_ml100k(fixtures_dir, fast):
    (_, ratings), (_, movies) = read_tasks(source(fixtures_dir, "ml-100k"), fast)
    M = "Movies"
    assert rows(ratings.interactions) == [
        ("1", "1", M, 874965758, 5.0),
        ("1", "2", M, 876893171, 3.0),
        ("1", "3", M, 878542960, 4.0),
        ("2", "1", M, 888551324, 4.0),
        ("2", "2", M, 888551324, 4.0),  # equal timestamps
        ("2", "4", M, 888551400, 3.0),
        ("2", "1", M, 888551324, 4.0),  # exact duplicate
        ("3", "1", M, 889237455, 4.0),
        ("3", "4", M, 889237600, 2.0),
        ("3", "9", M, 889237700, 5.0),  # item 9 is not in u.item
        ("4", "3", M, 892000000, 5.0),
        ("4", "4", M, 892003600, 4.0),
        ("4", "2", M, 892090000, 1.0),
        ("1", "4", M, 879000000, 4.0),
        ("1", "6", M, 880000000, 5.0),
        ("4", "6", M, 892100000, 3.0),
    ]
    assert rejects(ratings) == [("u.data", 9, "bad_value:rating"), ("u.data", 10, "bad_columns")]
    assert ratings.rejects.column("text").to_pylist() == ["3\t4\tabc\t889237500", "3\t2\t3"]
    assert [r[:4] for r in rows(movies.items)] == [
        ("1", M, "Toy Story (1995)", "Animation|Children's|Comedy"),
        ("2", M, "GoldenEye (1995)", "Action|Adventure|Thriller"),
        ("3", M, "Four Rooms (1995)", "Thriller"),
        ("4", M, "Café au Lait (1993)", "Comedy"),  # byte 0xE9 in the file, decoded as latin-1
        ("5", M, "unknown", "unknown"),
        ("6", M, "Misérables, Les (1995)", "Drama|Musical"),
        ("8", M, "", "Drama"),
    ]
    assert json.loads(movies.items.column("attributes")[0].as_py()) == {
        "year": 1995, "genres": ["Animation", "Children's", "Comedy"], "release_date": "01-Jan-1995"}
    assert rejects(movies) == [("u.item", 7, "bad_columns")]


def test_ml100k_item_bytes_are_latin1(fixtures_dir):
    raw = (fixtures_dir / "ml-100k" / "u.item").read_bytes()
    assert b"Caf\xe9 au Lait" in raw  # the fixture really holds a non-UTF-8 byte
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_ml1m(fixtures_dir, fast):
    (_, ratings), (_, movies) = read_tasks(source(fixtures_dir, "ml-1m"), fast)
    M = "Movies"
    assert rows(ratings.interactions) == [
        ("1", "1193", M, 978300760, 5.0),
        ("1", "661", M, 978302109, 3.0),
        ("1", "914", M, 978301968, 3.0),
        ("2", "1193", M, 978298413, 5.0),
        ("2", "661", M, 978298413, 4.0),
        ("2", "1193", M, 978298413, 5.0),
        ("2", "3408", M, 978299000, 4.0),
        ("3", "1193", M, 978297100, 2.0),
        ("3", "3408", M, 978297200, 3.0),
        ("3", "9999", M, 978297300, 5.0),
        ("4", "914", M, 978296000, 4.0),
        ("4", "3408", M, 978296000, 5.0),
        ("1", "3408", M, 978302200, 4.0),
        ("4", "1193", M, 978296100, 3.0),
    ]
    assert rejects(ratings) == [("ratings.dat", 8, "bad_value:rating"), ("ratings.dat", 9, "bad_columns")]
    assert [r[:4] for r in rows(movies.items)] == [
        ("661", M, "James and the Giant Peach (1996)", "Animation|Children's|Musical"),
        ("914", M, "My Fair Lady (1964)", "Musical|Romance"),
        ("1193", M, "One Flew Over the Cuckoo's Nest (1975)", "Drama"),
        ("3408", M, "Café Society &amp; Friends (2000)", "Comedy|Drama"),
        ("3409", M, "nan", "Drama"),
    ]
    assert json.loads(movies.items.column("attributes")[3].as_py()) == {"year": 2000, "genres": ["Comedy", "Drama"]}
    assert rejects(movies) == [("movies.dat", 6, "bad_columns")]


def test_ml_latest_small(fixtures_dir, fast):
    (_, ratings), (_, movies) = read_tasks(source(fixtures_dir, "ml-latest-small"), fast)
    M = "Movies"
    assert rows(ratings.interactions) == [
        ("1", "1", M, 964982703, 4.0),
        ("1", "3", M, 964981247, 4.0),
        ("1", "6", M, 964982224, 4.5),
        ("2", "1", M, 1445714835, 3.5),
        ("2", "3", M, 1445714835, 4.0),
        ("2", "1", M, 1445714835, 3.5),
        ("2", "11", M, 1445715000, 5.0),
        ("3", "11", M, 1306463100, 3.0),
        ("3", "6", M, 1306463200, 0.5),
        ("3", "999", M, 1306463300, 4.0),
        ("4", "11", M, 1306500000, 4.0),
        ("4", "1", M, 1306500000, 5.0),
        ("1", "11", M, 964983000, 3.0),
        ("4", "3", M, 1306500100, 2.5),
    ]
    # line numbers count the header line
    assert rejects(ratings) == [("ratings.csv", 9, "bad_value:rating"), ("ratings.csv", 10, "bad_columns")]
    assert [r[:4] for r in rows(movies.items)] == [
        ("1", M, "Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
        ("3", M, "Grumpier Old Men (1995)", "Comedy|Romance"),
        ("6", M, "American President, The (1995)", "Comedy|Drama|Romance"),  # quoted comma
        ("11", M, '"Great" Performances: Cats &amp; Dogs (1998)', "Musical"),  # doubled quotes
        ("12", M, "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", None),  # (no genres listed), utf-8
        ("14", M, "", "Drama"),
    ]
    assert rejects(movies) == [("movies.csv", 7, "bad_columns")]


def test_strict_and_missing(fixtures_dir, tmp_path):
    with pytest.raises(DataError, match=r"ml-100k/u\.data:9: bad_value:rating$"):
        read_tasks(source(fixtures_dir, "ml-100k"), strict=True)
    with pytest.raises(DataError, match=r"ml-1m/ratings\.dat:8: bad_value:rating$"):
        read_tasks(source(fixtures_dir, "ml-1m"), strict=True)
    with pytest.raises(DataError, match=rf"^{tmp_path}/u\.data: ml-100k ratings not found$"):
        plan_reads(MovieLensSource(kind="movielens", path=str(tmp_path), variant="ml-100k"))
    (tmp_path / "ratings.csv").write_text("user,movie,rating,timestamp\n1,2,3.0,4\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n")
    tasks = plan_reads(MovieLensSource(kind="movielens", path=str(tmp_path), variant="ml-latest"))
    with pytest.raises(DataError, match=r"ratings\.csv:1: header lacks column\(s\) userId, movieId"):
        read_tasks(MovieLensSource(kind="movielens", path=str(tmp_path), variant="ml-latest"))
    assert len(tasks) == 2
