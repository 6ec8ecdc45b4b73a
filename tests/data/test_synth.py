"""data/synth.py: determinism, chunk independence, sizes, the planted signal, the Amazon-2018 writer."""

import json
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from recplat.data import synth
from recplat.data.config import SyntheticSource


def source(**kw) -> SyntheticSource:
    base = dict(kind="synthetic", users=400, items_per_domain=120, topics=8, mean_interactions=20.0, seed=7)
    return SyntheticSource(**{**base, **kw})


@pytest.fixture(scope="module")
def corpus():
    src = source()
    inter = synth.generate_interactions(src, 0, src.users).to_pandas()
    items = pd.concat([synth.generate_items(src, d).to_pandas() for d in src.domains], ignore_index=True)
    items["topic"] = [json.loads(a)["topic"] for a in items["attributes"]]
    return src, inter, items


def test_same_seed_same_tables_and_other_seed_differs():
    a, b = source(), source()
    assert synth.generate_interactions(a, 0, 50).equals(synth.generate_interactions(b, 0, 50))
    assert synth.generate_items(a, "Books").equals(synth.generate_items(b, "Books"))
    assert not synth.generate_interactions(source(seed=8), 0, 50).equals(synth.generate_interactions(a, 0, 50))


def test_chunking_does_not_change_rows():
    src = source()
    whole = synth.generate_interactions(src, 0, 300)
    parts = pa.concat_tables([synth.generate_interactions(src, lo, hi) for lo, hi in [(0, 1), (1, 137), (137, 300)]])
    assert parts.equals(whole)


def test_items_depend_on_seed_and_domain_only():
    small = synth.generate_items(source(users=10), "Music")
    assert small.equals(synth.generate_items(source(users=999, domains=["Music"]), "Music"))


def test_sizes_match_config(corpus):
    src, inter, items = corpus
    assert inter["user"].nunique() == src.users  # every user has rows, so is in >= 1 domain
    assert abs(len(inter) / (src.users * src.mean_interactions) - 1) < 0.1
    assert (items.groupby("domain").size() == src.items_per_domain).all()
    assert set(inter["domain"]) == set(src.domains)
    assert set(inter["item"]) <= set(items["item"])
    assert inter["user"].iloc[0] == "u0000000" and items["item"].iloc[17] == "Books-00017"


def test_users_span_domains(corpus):
    _, inter, _ = corpus
    domains_per_user = inter.groupby("user")["domain"].nunique()
    assert (domains_per_user >= 1).all()
    assert (domains_per_user >= 2).mean() > 0.6


def test_timestamps_ratings(corpus):
    _, inter, _ = corpus
    diffs = inter.groupby("user")["timestamp"].diff().dropna()
    assert (diffs > 0).all()
    day = inter["timestamp"] // 86400
    same_day = (day.groupby(inter["user"]).diff() == 0).mean()
    assert 0.05 < same_day < 0.4
    assert day.nunique() > 500
    assert set(inter["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def _topic_hits(inter, items, cross_domain_only: bool):
    topic = dict(zip(items["item"], items["topic"]))
    hits = total = 0
    for _, rows in inter.groupby("user", sort=False):
        topics, doms = [topic[i] for i in rows["item"]], list(rows["domain"])
        for t in range(5, len(topics)):
            window = [topics[j] for j in range(t) if not cross_domain_only or doms[j] != doms[t]][-5:]
            if len(window) < 5:
                continue
            total += 1
            hits += Counter(window).most_common(1)[0][0] == topics[t]
    return hits / total, total


def test_planted_topic_signal_is_real(corpus):
    src, inter, items = corpus
    rate, n = _topic_hits(inter, items, cross_domain_only=False)
    assert n > 1000 and rate > 4 / src.topics  # chance is 1/topics = 0.125
    # the preference is shared: the last 5 items of OTHER domains predict this domain's next item
    cross, m = _topic_hits(inter, items, cross_domain_only=True)
    assert m > 500 and cross > 3 / src.topics


def test_popularity_is_skewed_but_weaker_than_topic(corpus):
    src, inter, items = corpus
    counts = inter.groupby("item").size().sort_values(ascending=False)
    top = counts.head(len(items) // 10).sum() / counts.sum()
    assert top > 0.2  # top 10% of items: more than twice their share
    # always guessing the domain's most popular item is right far less often than the topic is
    best = inter.groupby("domain")["item"].agg(lambda s: s.value_counts().index[0])
    assert (inter["item"] == inter["domain"].map(best)).mean() < 0.1


def test_titles_unique_and_carry_the_topic(corpus):
    src, _, items = corpus
    assert not items.duplicated(["domain", "title"]).any()
    owner = {w: t for t in range(src.topics) for w in synth.topic_words(t)}
    assert len(owner) == src.topics * synth.WORDS_PER_TOPIC  # no word shared by two topics
    for title, t in zip(items["title"], items["topic"]):
        assert {owner[w] for w in title.split() if w in owner} == {t}
    made_up = {w for t in range(20, 400) for w in synth.topic_words(t)}
    assert len(made_up) == 380 * synth.WORDS_PER_TOPIC


def test_per_domain_vocabulary_renames_topics_and_keeps_everything_else(corpus):
    src, inter, items = corpus
    own = source(vocabulary="per_domain")
    renamed = pd.concat([synth.generate_items(own, d).to_pandas() for d in own.domains], ignore_index=True)
    assert renamed[["item", "domain", "attributes"]].equals(items[["item", "domain", "attributes"]])
    assert synth.generate_interactions(own, 0, own.users).to_pandas().equals(inter)  # same behaviour
    words = {d: {w for t in renamed.loc[renamed["domain"] == d, "title"] for w in t.split()}
             for d in own.domains}
    theme = set(synth.THEME_WORDS) | {w for t in range(20, 60) for w in synth.topic_words(t)}
    for i, a in enumerate(own.domains):  # no topic word is shared by two domains
        for b in own.domains[i + 1 :]:
            assert not (words[a] & words[b] & theme), (a, b)
    for (d, title, attrs) in renamed[["domain", "title", "attributes"]].itertuples(index=False):
        topic = own.domains.index(d) * own.topics + json.loads(attrs)["topic"]
        assert set(title.split()) & set(synth.topic_words(topic)), title


def test_many_items_per_topic_still_unique_titles():
    cat = synth.domain_catalog(0, "Office_Products", 3000, 2)
    assert len(set(cat.titles)) == 3000
    assert "Office Products" in cat.titles[0]


def test_write_amazon2018_round_trips(tmp_path):
    src = source(users=120, users_per_task=50, domains=["Books", "Toys"])
    info = synth.write_amazon2018(tmp_path, src)
    expected = synth.generate_interactions(src, 0, src.users)
    assert info["interactions"] == expected.num_rows and info["items"] == 2 * src.items_per_domain
    names = ["item", "user", "rating", "timestamp"]
    for domain in src.domains:
        text = (tmp_path / f"{domain}.csv").read_text()
        assert text.splitlines()[0].count(",") == 3 and ".0," in text.splitlines()[0]
        read = pacsv.read_csv(tmp_path / f"{domain}.csv", read_options=pacsv.ReadOptions(column_names=names))
        want = expected.filter(pa.compute.equal(expected.column("domain"), domain))
        assert read.column("item").to_pylist() == want.column("item").to_pylist()
        assert read.column("user").to_pylist() == want.column("user").to_pylist()
        assert read.column("timestamp").to_pylist() == want.column("timestamp").to_pylist()
        assert read.column("rating").to_pylist() == want.column("rating").to_pylist()
        meta = pd.read_json(tmp_path / f"meta_{domain}.json", lines=True)
        items = synth.generate_items(src, domain)
        assert list(meta.columns) == ["asin", "title"]
        assert meta["asin"].tolist() == items.column("item").to_pylist()
        assert meta["title"].tolist() == items.column("title").to_pylist()


def test_write_amazon2018_gzip_meta(tmp_path):
    src = source(users=5, domains=["Games"])
    synth.write_amazon2018(tmp_path, src, gzip_meta=True)
    meta = pd.read_json(tmp_path / "meta_Games.json.gz", lines=True, compression="gzip")
    assert len(meta) == src.items_per_domain
