"""sources/ninerec.py on tests/fixtures/ninerec (NineRec's headerless Bilibili files)."""

import json

import pytest

from recplat.data.config import NineRecSource
from recplat.data.sources import plan_reads
from recplat.errors import DataError
from tests.data.sources.reading import read_tasks, rejects, rows


def source(fixtures_dir, **kw):
    return NineRecSource(kind="ninerec", path=str(fixtures_dir / "ninerec"), dataset="Bili_Movie", **kw)


def test_plan_names_the_files_and_the_domain(fixtures_dir):
    tasks = plan_reads(source(fixtures_dir))
    assert [(t.role, t.domain, t.path.rsplit("/", 1)[-1]) for t in tasks] == [
        ("interactions", "Bili_Movie", "Bili_Movie_pair.csv"), ("items", "Bili_Movie", "Bili_Movie_item.csv")]
    assert plan_reads(source(fixtures_dir, domain="Movies"))[0].domain == "Movies"
    with pytest.raises(DataError, match="Bili_Cartoon_pair.csv"):
        plan_reads(NineRecSource(kind="ninerec", path=str(fixtures_dir / "ninerec"), dataset="Bili_Cartoon"))


def test_pairs_and_english_titles(fixtures_dir, fast):
    (_, pairs), (_, items) = read_tasks(source(fixtures_dir), fast)
    got = rows(pairs.interactions)
    assert len(got) == 20 and got[0] == ("u1", "v101", "Bili_Movie", 1600000000, None)  # (video, user) swapped back
    assert got[17] == got[0]  # the exact duplicate pair is kept (the dedupe stage removes it)
    assert got[19] == ("u4", "v110", "Bili_Movie", 1600000400, None)
    assert rejects(pairs) == [("Bili_Movie_pair.csv", 19, "bad_columns")]
    titles = {r[0]: r[2] for r in rows(items.items)}
    assert titles["v104"] == "Infernal Affairs, Part 1" and titles["v101"] == "Farewell My Concubine"
    assert titles["v110"] is None  # no English title: the titles stage drops it
    assert json.loads(items.items.column("attributes")[0].as_py()) == {"title_en": "Farewell My Concubine",
                                                                        "title_zh": "霸王别姬"}
    assert rejects(items) == [("Bili_Movie_item.csv", 9, "bad_columns")]


def test_chinese_titles_and_strict_mode(fixtures_dir):
    (_, _), (_, items) = read_tasks(source(fixtures_dir, language="zh"))
    titles = {r[0]: r[2] for r in rows(items.items)}
    assert titles["v104"] == "无间道, 第一部" and titles["v110"] == "少年的你"
    with pytest.raises(DataError, match="Bili_Movie_pair.csv:19"):
        read_tasks(source(fixtures_dir), strict=True)
