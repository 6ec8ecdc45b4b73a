"""A seeded multi-domain corpus with planted cross-domain preferences (config: SyntheticSource).

What is planted, so tests and benchmarks can check that models learn it:
- `topics` latent topics. Every item of every domain belongs to one topic, and its title is built
  from that topic's words plus a topic-free modifier and a domain noun ("Golden Crimson Harbor
  Novel"), so the title TEXT carries the topic. Titles are unique within a domain.
- Each user has ONE preferred topic, shared by all domains, that drifts slowly (it is redrawn with
  probability DRIFT per interaction). An interaction follows it with probability TOPIC_SHARE, so
  the user's recent items in any domain predict the next item in every domain.
- Popularity is Zipf-like within each (domain, topic) and over each domain: a real but weaker signal.
- Users are active in 1 + Binomial(D - 1, EXTRA_DOMAIN) domains (many in >= 2), with uneven
  activity across them; interaction counts average `mean_interactions`; timestamps strictly
  increase, spread over days with some same-day pairs; ratings 1-5 (higher on topic).

Determinism: items depend only on (seed, domain) (a numpy Generator seeded with both); user u's
rows depend only on (seed, u) (seeded.py counter-based draws keyed by the user and the row's
position), so any split of the users into chunks gives the same rows.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recplat.data import schema, seeded

DRIFT = 0.05  # probability per interaction that the preferred topic is redrawn
TOPIC_SHARE = 0.8  # probability that an interaction follows the current preferred topic
EXTRA_DOMAIN = 0.4  # each further domain joins the user's set with this probability
ZIPF = 0.9  # popularity weight of the item of rank r within its group: r ** -ZIPF
SAME_DAY = 0.15  # probability that an interaction follows the previous within the hour
MEAN_GAP_DAYS = 6.0
START = 1_420_070_400  # 2015-01-01 UTC
SPAN_DAYS = 3 * 365  # users start uniformly within this span
WORDS_PER_TOPIC = 4
_MASK = 0xFFFFFFFFFFFFFFFF

THEME_WORDS = """Crimson Harbor Mystery Shadow Solar Orbit Galaxy Rocket Garden Blossom Meadow Petal
Iron Forge Steel Anvil Ocean Coral Tide Reef Winter Frost Glacier Snow Desert Dune Mirage Oasis
Jazz Velvet Midnight Lounge Dragon Castle Knight Quest Robot Circuit Pixel Neon Forest Timber Moss
Fern Storm Thunder Lightning Tempest Candle Lantern Ember Hearth Pirate Anchor Compass Voyage Cosmic
Nebula Comet Meteor""".split()
MODIFIERS = """Golden Silent Little Grand Hidden Bright Lost Wild Quiet Brave Ancient Modern Secret
Simple Happy Dark Gentle Royal Swift Lucky Broken Endless Final First Last Rising Falling Early
Deluxe Classic Tiny Great Humble Noble Urban Rustic Vintage Cozy Bold Crystal""".split()
DOMAIN_NOUNS = {
    "Books": ["Novel", "Guide", "Anthology", "Handbook", "Memoir", "Chronicle"],
    "Movies": ["Film", "Documentary", "Saga", "Feature", "Trilogy", "Miniseries"],
    "Music": ["Album", "Suite", "Sessions", "Anthem", "Ballads", "Symphony"],
    "Games": ["Game", "Adventure", "Tactics", "Simulator", "Arena", "Odyssey"],
    "Toys": ["Playset", "Puzzle", "Figure", "Plush", "Blocks", "Kit"],
}
_SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "dor", "sil", "tha", "qu", "zen", "bri", "mor"]


def topic_words(topic: int) -> list[str]:
    """The words of a topic: real theme words while they last, then made-up (distinct) words."""
    if (topic + 1) * WORDS_PER_TOPIC <= len(THEME_WORDS):
        return THEME_WORDS[topic * WORDS_PER_TOPIC : (topic + 1) * WORDS_PER_TOPIC]
    words = []
    for j in range(WORDS_PER_TOPIC):  # base-12 digits of a unique number, >= 3 syllables (prefix-free)
        n, digits = topic * WORDS_PER_TOPIC + j, []
        while n or len(digits) < 3:
            n, digit = divmod(n, len(_SYLLABLES))
            digits.append(digit)
        words.append("".join(_SYLLABLES[d] for d in digits).capitalize())
    return words


def domain_nouns(domain: str) -> list[str]:
    base = domain.replace("_", " ").strip() or "Item"
    return DOMAIN_NOUNS.get(domain, [base, f"{base} Set", f"{base} Edition", f"{base} Pack"])


@dataclass(frozen=True)
class DomainCatalog:
    domain: str
    items: np.ndarray  # object: item ids "<domain>-00017"
    titles: np.ndarray  # object
    topics: np.ndarray  # int32
    weights: np.ndarray  # float64 popularity weight (Zipf by rank within the item's topic)


@lru_cache(maxsize=64)
def domain_catalog(seed: int, domain: str, items_per_domain: int, topics: int,
                   word_offset: int = 0) -> DomainCatalog:  # fmt: skip
    """The items of one domain: a function of (seed, domain), the sizes and the word offset only
    (topic t is named with the words of topic word_offset + t)."""
    rng = np.random.default_rng([seed & _MASK, 1, seeded.tag(domain)])
    n = items_per_domain
    topic_of = rng.permutation(np.arange(n) % topics).astype(np.int32)  # balanced topics
    perm = rng.permutation(n)
    grouped = perm[np.argsort(topic_of[perm], kind="stable")]  # items by topic, random within
    starts = np.searchsorted(topic_of[grouped], topic_of[grouped], side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[grouped] = np.arange(n) - starts + 1
    first = rng.integers(WORDS_PER_TOPIC, size=n)
    second = (first + 1 + rng.integers(WORDS_PER_TOPIC - 1, size=n)) % WORDS_PER_TOPIC
    modifier = rng.integers(len(MODIFIERS), size=n)
    nouns = domain_nouns(domain)
    noun = rng.integers(len(nouns), size=n)
    titles, seen = [], {}
    for i in range(n):
        words = topic_words(word_offset + int(topic_of[i]))
        title = f"{MODIFIERS[modifier[i]]} {words[first[i]]} {words[second[i]]} {nouns[noun[i]]}"
        seen[title] = seen.get(title, 0) + 1
        titles.append(title if seen[title] == 1 else f"{title} Vol. {seen[title]}")
    width = max(5, len(str(n - 1)))
    items = np.array([f"{domain}-{i:0{width}d}" for i in range(n)], dtype=object)
    return DomainCatalog(domain, items, np.array(titles, dtype=object), topic_of, rank.astype(np.float64) ** -ZIPF)


def word_offset(source, domain: str) -> int:
    """Where a domain's topic words start: 0 for a shared vocabulary, else one block per domain."""
    return 0 if source.vocabulary == "shared" else source.domains.index(domain) * source.topics


def generate_items(source, domain: str) -> pa.Table:
    """schema.ITEMS rows of one domain; `attributes` holds the planted topic (ground truth)."""
    cat = domain_catalog(source.seed, domain, source.items_per_domain, source.topics, word_offset(source, domain))
    attributes = [json.dumps({"topic": int(t)}) for t in cat.topics]
    return pa.table(
        {"item": list(cat.items), "domain": [domain] * len(cat.items), "title": list(cat.titles),
         "category": pa.nulls(len(cat.items), pa.string()), "attributes": attributes},
        schema=schema.ITEMS,
    )


class _Segments:
    """Inverse-CDF sampling within groups of items, vectorised over rows with different groups."""

    def __init__(self, group: np.ndarray, weights: np.ndarray, n_groups: int):
        self.order = np.argsort(group, kind="stable")  # global item positions, grouped
        g, w = group[self.order], weights[self.order]
        self.start = np.searchsorted(g, np.arange(n_groups), side="left")
        self.stop = np.searchsorted(g, np.arange(n_groups), side="right")
        cum = np.cumsum(w)
        before = np.concatenate([[0.0], cum])[self.start]
        total = np.concatenate([[0.0], cum])[self.stop] - before
        self.cdf = g + (cum - before[g]) / np.maximum(total[g], 1e-300)  # in (g, g + 1]

    def nonempty(self, groups: np.ndarray) -> np.ndarray:
        return self.stop[groups] > self.start[groups]

    def draw(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.cdf, groups + u, side="right")
        return self.order[np.clip(idx, self.start[groups], self.stop[groups] - 1)]


@lru_cache(maxsize=4)
def _world(seed: int, domains: tuple[str, ...], items_per_domain: int, topics: int):
    # titles do not matter here (the vocabulary only renames items): offset 0
    cats = [domain_catalog(seed, d, items_per_domain, topics) for d in domains]
    dom = np.repeat(np.arange(len(domains)), items_per_domain)
    topic = np.concatenate([c.topics for c in cats]).astype(np.int64)
    weights = np.concatenate([c.weights for c in cats])
    items = pa.array(np.concatenate([c.items for c in cats]), pa.string())
    on_topic = _Segments(dom * topics + topic, weights, len(domains) * topics)
    by_domain = _Segments(dom, weights, len(domains))
    return items, on_topic, by_domain


def generate_interactions(source, user_start: int, user_stop: int) -> pa.Table:
    """schema.INTERACTIONS rows of users [user_start, user_stop), sorted by (user, timestamp)."""
    seed, n_dom, n_top = source.seed, len(source.domains), source.topics
    items, on_topic, by_domain = _world(seed, tuple(source.domains), source.items_per_domain, n_top)
    users = np.arange(user_start, user_stop, dtype=np.int64)
    ud = seeded.uniform(seeded.row_keys(seed, "synth:user", users), 4 + 3 * n_dom)
    theta = max(source.mean_interactions - 1.0, 0.0) / 2.0  # 1 + Gamma(2, theta): mean ~ mean_interactions
    n = 1 + np.rint(-theta * (np.log1p(-ud[:, 0]) + np.log1p(-ud[:, 1]))).astype(np.int64)
    m = np.minimum(1 + (ud[:, 4 : 3 + n_dom] < EXTRA_DOMAIN).sum(axis=1), n)
    active = np.argsort(ud[:, 3 + n_dom : 3 + 2 * n_dom], axis=1)  # first m columns: the user's domains
    weight = -np.log1p(-ud[:, 3 + 2 * n_dom : 3 + 3 * n_dom])
    weight[np.arange(n_dom)[None, :] >= m[:, None]] = 0.0
    cdf = np.cumsum(weight, axis=1) / weight.sum(axis=1, keepdims=True)
    cdf[np.arange(n_dom)[None, :] >= m[:, None]] = np.inf

    local = np.repeat(np.arange(len(users)), n)
    first_row = np.concatenate([[0], np.cumsum(n)[:-1]])
    pos = np.arange(len(local)) - first_row[local]
    rd = seeded.uniform(seeded.row_keys(seed, "synth:row", users[local], pos), 10)
    # domains: the first m positions cover each active domain once, the rest follow the weights;
    # then the sequence is permuted within the user so the guaranteed ones are not all first
    slot = np.where(pos < m[local], pos, np.minimum((rd[:, 2, None] >= cdf[local]).sum(axis=1), m[local] - 1))
    dom_init = active[local, slot]
    dom = dom_init[np.lexsort((rd[:, 3], local))]
    # the preferred topic: redrawn at the first row and with probability DRIFT afterwards
    switch = (pos == 0) | (rd[:, 0] < DRIFT)
    last = np.maximum.accumulate(np.where(switch, np.arange(len(local)), 0))
    topic = np.minimum((rd[:, 1] * n_top).astype(np.int64), n_top - 1)[last]
    follows = (rd[:, 4] < TOPIC_SHARE) & on_topic.nonempty(dom * n_top + topic)

    def pick(u: np.ndarray, rows=slice(None)) -> np.ndarray:
        on = follows[rows]
        return np.where(on, on_topic.draw(np.where(on, dom[rows] * n_top + topic[rows], 0), u),
                        by_domain.draw(dom[rows], u))

    item = pick(rd[:, 5])
    for attempt in range(4):  # redraw items a user already has (a few rounds; rare repeats remain)
        repeat = _repeats(local, item)
        if not repeat.any():
            break
        rows = np.flatnonzero(repeat)
        extra = seeded.uniform(seeded.row_keys(seed, "synth:row", users[local[rows]], pos[rows]), 1, start=11 + attempt)
        item[rows] = pick(extra[:, 0], rows)

    same_day = rd[:, 6] < SAME_DAY
    gap_days = 1 + np.floor(-MEAN_GAP_DAYS * np.log1p(-rd[:, 7]))
    gap = np.where(same_day, 60 + np.floor(rd[:, 8] * 3000), gap_days * 86400 + np.floor((rd[:, 8] - 0.5) * 43200))
    gap = np.where(pos == 0, 0, gap).astype(np.int64)
    cum = np.cumsum(gap)
    start = START + np.floor(ud[:, 2] * SPAN_DAYS * 86400).astype(np.int64)
    timestamp = start[local] + cum - cum[first_row[local]]
    rating = np.where(follows, np.select([rd[:, 9] < 0.55, rd[:, 9] < 0.9], [5, 4], 3), 1 + np.floor(rd[:, 9] * 5))

    user_ids = pa.array([f"u{u:07d}" for u in users], pa.string())
    return pa.table(
        {"user": user_ids.take(pa.array(local)), "item": items.take(pa.array(item)),
         "domain": pa.array(source.domains, pa.string()).take(pa.array(dom)),
         "timestamp": pa.array(timestamp, pa.int64()), "rating": pa.array(rating.astype(np.float32))},
        schema=schema.INTERACTIONS,
    )


def _repeats(local: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Rows whose (user, item) appeared at an earlier row of the same user."""
    order = np.lexsort((np.arange(len(item)), item, local))
    same = (local[order][1:] == local[order][:-1]) & (item[order][1:] == item[order][:-1])
    out = np.zeros(len(item), dtype=bool)
    out[order[1:][same]] = True
    return out


def write_amazon2018(corpus_dir: str | Path, source_cfg, gzip_meta: bool = False) -> dict:
    """Write the corpus as Amazon Review Data 2018 files, one chunk of users at a time.

    `<Domain>.csv` (no header: item,user,rating,timestamp) and `meta_<Domain>.json` (JSON lines
    with asin, title; `.json.gz` with gzip_meta). Returns {"files": [...], "items": n, "interactions": n}.
    """
    out = Path(corpus_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, n_items, n_inter = [], 0, 0
    for domain in source_cfg.domains:
        cat = domain_catalog(source_cfg.seed, domain, source_cfg.items_per_domain, source_cfg.topics,
                             word_offset(source_cfg, domain))
        meta = out / (f"meta_{domain}.json" + (".gz" if gzip_meta else ""))
        with (gzip.open(meta, "wt", encoding="utf-8") if gzip_meta else open(meta, "w", encoding="utf-8")) as fh:
            for asin, title in zip(cat.items, cat.titles):
                fh.write(json.dumps({"asin": asin, "title": title}) + "\n")
        files.append(meta)
        n_items += len(cat.items)
    csv_paths = {d: out / f"{d}.csv" for d in source_cfg.domains}
    handles = {d: open(p, "wb") for d, p in csv_paths.items()}
    rating_text = pa.array(["0.0", "1.0", "2.0", "3.0", "4.0", "5.0"])
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    try:
        for lo in range(0, source_cfg.users, source_cfg.users_per_task):
            chunk = generate_interactions(source_cfg, lo, min(lo + source_cfg.users_per_task, source_cfg.users))
            n_inter += chunk.num_rows
            for d, handle in handles.items():
                rows = chunk.filter(pc.equal(chunk.column("domain"), d))
                ratings = rating_text.take(rows.column("rating").cast(pa.int64()))
                table = pa.table({"item": rows.column("item"), "user": rows.column("user"),
                                  "rating": ratings, "timestamp": rows.column("timestamp")})
                pacsv.write_csv(table, handle, options)
    finally:
        for handle in handles.values():
            handle.close()
    files += list(csv_paths.values())
    return {"files": [str(f) for f in files], "items": n_items, "interactions": n_inter}
