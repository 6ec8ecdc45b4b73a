"""Dataset statistics (recplat/data/stats.py): hand-counted tables, and streaming == in-memory."""

import pyarrow as pa
import pytest

from recplat.data import stats, writer

ROWS = [  # user, domain, item
    ("a", "Books", "b1"), ("a", "Books", "b2"), ("a", "Music", "m1"),
    ("b", "Books", "b1"), ("b", "Games", "g1"),
    ("c", "Music", "m1"), ("c", "Music", "m2"), ("c", "Games", "g1"), ("c", "Books", "b3"),
    ("d", "Games", "g2"),
]


def table():
    u, d, i = zip(*ROWS)
    return pa.table({"user": list(u), "domain": list(d), "item": list(i)})


def test_hand_counted_tables():
    s = stats.stats_table(table())
    by = {r["domain"]: r for r in s["domains"]}
    assert by["Books"] == {"domain": "Books", "users": 3, "items": 3, "interactions": 4, "density": 4 / 9}
    assert by["Games"]["users"] == 3 and by["Games"]["items"] == 2 and by["Games"]["interactions"] == 3
    assert by["Music"]["users"] == 2 and by["Music"]["items"] == 2
    assert s["all"] == {"domain": "all", "users": 4, "items": 7, "interactions": 10, "density": 10 / 28}
    assert s["overlap"]["domains"] == ["Books", "Games", "Music"]
    # Books∩Games = {b, c}; Books∩Music = {a, c}; Games∩Music = {c}
    assert s["overlap"]["users"] == [[3, 2, 2], [2, 3, 1], [2, 1, 2]]
    assert s["users_by_num_domains"] == [
        {"num_domains": 1, "users": 1}, {"num_domains": 2, "users": 2}, {"num_domains": 3, "users": 1}]


def test_partials_add_up_to_the_whole():
    t = table()
    parts = [stats.partial_stats(t.filter(pa.compute.is_in(t.column("user"), pa.array(us)))) for us in (["a", "c"], ["b"], ["d"])]
    assert stats.combine(parts) == stats.stats_table(t)


def test_stage_on_ray_equals_in_memory(ray_local):
    import ray

    t = table()
    t = t.append_column("bucket", writer.bucket_column(t.column("user"), 3))
    ds = ray.data.from_arrow(t).repartition(3)
    assert stats.stats_stage(ds, 3) == stats.stats_table(t)


def test_format_stats_prints_three_tables():
    text = stats.format_stats(stats.stats_table(table()))
    assert "#Interactions" in text and "User overlap" in text and "Users by number of domains" in text
    assert "Books" in text.splitlines()[3]


def test_missing_bucket_is_a_clear_error(ray_local):
    import ray

    from recplat.errors import DataError

    with pytest.raises(DataError, match="bucket"):
        stats.stats_stage(ray.data.from_arrow(table()))
