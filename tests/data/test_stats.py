"""Dataset statistics (recplat/data/stats.py): hand-counted tables, and streaming == in-memory."""

import pyarrow as pa

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
    no_examples = {"training": 0, "validation": 0, "testing": 0}  # interactions alone: no splits
    assert by["Books"] == {"domain": "Books", "users": 3, "items": 3, "interactions": 4, "density": 4 / 9} | no_examples
    assert by["Games"]["users"] == 3 and by["Games"]["items"] == 2 and by["Games"]["interactions"] == 3
    assert by["Music"]["users"] == 2 and by["Music"]["items"] == 2
    assert s["all"] == {"domain": "all", "users": 4, "items": 7, "interactions": 10, "density": 10 / 28} | no_examples
    assert s["overlap"]["domains"] == ["Books", "Games", "Music"]
    # Books∩Games = {b, c}; Books∩Music = {a, c}; Games∩Music = {c}
    assert s["overlap"]["users"] == [[3, 2, 2], [2, 3, 1], [2, 1, 2]]
    assert s["users_by_num_domains"] == [
        {"num_domains": 1, "users": 1}, {"num_domains": 2, "users": 2}, {"num_domains": 3, "users": 1}]


def test_partials_add_up_to_the_whole():
    t = table()
    parts = [stats.partial_stats(t.filter(pa.compute.is_in(t.column("user"), pa.array(us)))) for us in (["a", "c"], ["b"], ["d"])]
    assert stats.combine(parts) == stats.stats_table(t)


def sequences_and_examples():
    """Mixed sequences (and per-domain ones the stats must ignore) with their LOO examples."""
    seqs = pa.table({
        "user": ["a", "a", "b", "c"],
        "scope": ["__mixed__", "Books", "__mixed__", "__mixed__"],
        "items": [[1, 2, 1, 5], [1, 2, 1], [2, 5, 6], [5, 6, 1, 1, 2]],
        "domains": [["Books", "Books", "Books", "Music"], ["Books"] * 3, ["Books", "Music", "Music"],
                    ["Music", "Music", "Books", "Books", "Books"]],
    })
    seqs = seqs.append_column("bucket", writer.bucket_column(seqs.column("user"), 2))
    examples = pa.table({"split": ["train", "valid", "test", "valid", "test", "valid", "test", "test"],
                         "target_domain": ["Books", "Books", "Music", "Music", "Music", "Books", "Books", "Books"]})
    return seqs, examples


def test_final_stats_in_the_papers_columns():
    """#Training = interactions but each sequence's last two (LLM-Rec Table 1); #Testing by target domain."""
    from recplat.data.config import SplitConfig

    seqs, examples = sequences_and_examples()
    s = stats.final_stats(seqs, examples, "both", SplitConfig(), 0)
    assert s["all"] == {"domain": "all", "users": 3, "items": 4, "interactions": 12, "density": 12 / 12,
                        "training": 12 - 2 * 3, "validation": 3, "testing": 4}
    by = {r["domain"]: r for r in s["domains"]}
    assert (by["Books"]["interactions"], by["Books"]["training"], by["Books"]["testing"]) == (7, 4, 2)
    assert (by["Music"]["interactions"], by["Music"]["training"], by["Music"]["validation"]) == (5, 2, 1)
    assert by["Books"]["items"] == 2 and by["Music"]["items"] == 2  # distinct item_idx of the domain
    # the user split: whole sequences of train users are training interactions
    user_split = SplitConfig(method="user", ratios=(1, 0, 0))
    assert stats.final_stats(seqs, examples, "mixed", user_split, 0)["all"]["training"] == 12
    assert stats.final_stats(seqs, examples, "mixed", SplitConfig(method="user", ratios=(0, 0, 1)), 0)["all"]["training"] == 0


def test_format_stats_prints_three_tables():
    text = stats.format_stats(stats.stats_table(table()))
    assert "#Interactions" in text and "User overlap" in text and "Users by number of domains" in text
    assert "Books" in text.splitlines()[3]
