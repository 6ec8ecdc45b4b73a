"""The benchmark's yardstick: `recplat prepare`'s stages for the benchmark's config, in ONE process,
with polars for the relational work and numpy for the rest. Not used by the product.

It is what a skilled user would write by hand for this one config (benchmarks/prep_throughput.py:
Amazon-2018 CSV + meta JSON lines, titles cleaned, exact duplicates removed, mixed 5-core, mixed
sequences ordered by (timestamp, item, rating), leave-one-out prefixes with a 10-item window, 100
candidates per valid/test example and 10 per train example drawn from the target's domain), and so
the floor `recplat prepare` is measured against: the ratio says what Ray, partitioning and
generality cost on one machine.

Semantics: docs/data-plane.md, "Exact semantics". The seeded candidate draws are recplat's own
(`recplat.data.candidates.candidates_for_positions`, a pure numpy kernel, called once per chunk of
users): the draws are the specification, and the kernel is checked against the pandas reference in
tests/data/test_candidates.py. Everything else here is written independently of recplat's stages;
`compare` checks that both give the same items, sequences and examples, candidates included.

    python benchmarks/columnar_prepare.py CONFIG.yaml OUT [--check RECPLAT_OUT]
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

MIXED = "__mixed__"
SEQUENCES = pa.schema([("user", pa.string()), ("scope", pa.string()), ("items", pa.list_(pa.int32())),
                       ("domains", pa.list_(pa.string())), ("timestamps", pa.list_(pa.int64())),
                       ("ratings", pa.list_(pa.float32()))])
USERS_PER_CHUNK = 200_000  # candidate drawing holds one chunk's examples at a time


def read_corpus(source: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Interactions (user, item, domain, timestamp, rating) and items (domain, item, title) of an
    Amazon-2018 CSV corpus, in read order (domain by domain as listed)."""
    root = Path(source["path"])
    inter, items = [], []
    for domain in source["domains"]:
        ratings = pl.read_csv(root / f"{domain}.csv", has_header=False, new_columns=["item", "user", "rating", "timestamp"],
                              schema_overrides={"item": pl.String, "user": pl.String, "rating": pl.Float32, "timestamp": pl.Int64})
        inter.append(ratings.with_columns(domain=pl.lit(domain)))
        meta = pl.read_ndjson(root / f"meta_{domain}.json", schema={"asin": pl.String, "title": pl.String})
        items.append(meta.select(domain=pl.lit(domain), item="asin", title="title"))
    return pl.concat(inter), pl.concat(items)


def clean_titles(items: pl.DataFrame) -> pl.DataFrame:
    """First row per (domain, item); title = html.unescape once, whitespace collapsed; items whose
    title is missing, empty or "nan" are dropped."""
    items = items.unique(["domain", "item"], keep="first", maintain_order=True)
    unescaped = pl.when(pl.col("title").str.contains("&", literal=True)).then(
        pl.col("title").map_elements(html.unescape, return_dtype=pl.String)).otherwise(pl.col("title"))
    cleaned = unescaped.str.replace_all(r"\s+", " ").str.strip_chars(" ")
    items = items.with_columns(title=cleaned)
    return items.filter(pl.col("title").is_not_null() & (pl.col("title") != "") & (pl.col("title").str.to_lowercase() != "nan"))


def kcore(inter: pl.DataFrame, user_min: int, item_min: int) -> tuple[pl.DataFrame, int]:
    """Mixed scope: a user counts over all domains, an item per (domain, item); until nothing changes."""
    rounds = 0
    while True:
        rounds += 1
        kept = inter.filter((pl.len().over("user") >= user_min) & (pl.len().over(["domain", "item"]) >= item_min))
        if kept.height == inter.height:
            return kept, rounds
        inter = kept


def sequences(inter: pl.DataFrame) -> pl.DataFrame:
    """One mixed sequence per user, rows ordered by (timestamp, item, rating, domain)."""
    ordered = inter.sort(["user", "timestamp", "item", "rating", "domain"])
    return ordered.group_by("user", maintain_order=True).agg(
        items=pl.col("item_idx"), domains=pl.col("domain"), timestamps=pl.col("timestamp"), ratings=pl.col("rating"),
    ).with_columns(scope=pl.lit(MIXED)).select(["user", "scope", "items", "domains", "timestamps", "ratings"])


def examples(seqs: pa.Table, items: pl.DataFrame, popularity: np.ndarray, cfg, seed: int) -> dict[str, pa.Table]:
    """Leave-one-out examples (train t = 1..n-3, valid n-2, test n-1) with their seeded candidates."""
    from recplat.data.candidates import CandidatePool, candidates_for_positions, draw_keys

    pool = CandidatePool.build(items.select(["item_idx", "domain"]).to_arrow(), popularity)
    parts: dict[str, list[pa.Table]] = {"train": [], "valid": [], "test": []}
    for lo in range(0, seqs.num_rows, USERS_PER_CHUNK):
        chunk = seqs.slice(lo, USERS_PER_CHUNK)
        col = chunk.column("items").combine_chunks()
        values = col.values.to_numpy().astype(np.int64)
        off = (col.offsets.to_numpy() - col.offsets[0].as_py()).astype(np.int64)
        domains = np.asarray(chunk.column("domains").combine_chunks().values.to_numpy(zero_copy_only=False), dtype=object)
        n = np.diff(off)
        per = np.maximum(n - 1, 0)  # positions 1..n-1
        seq = np.repeat(np.arange(len(n)), per)
        t = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per) + 1
        code = np.where(t == n[seq] - 1, 2, np.where(t == n[seq] - 2, 1, 0))
        start = np.maximum(t - cfg.window, 0)
        hist_len = t - start
        hist_idx = np.repeat(off[seq] + start, hist_len) + (np.arange(hist_len.sum()) - np.repeat(np.cumsum(hist_len) - hist_len, hist_len))
        hist_off = np.concatenate([[0], np.cumsum(hist_len)])
        targets = values[off[seq] + t]
        target_domain = domains[off[seq] + t]
        users = np.asarray(chunk.column("user").to_numpy(zero_copy_only=False), dtype=object)[seq]
        scopes = np.full(len(seq), MIXED, dtype=object)
        keys = draw_keys(seed, users, scopes, code, t)
        cands = candidates_for_positions(values, off, seq, t, targets, code, target_domain, keys, pool, cfg.candidates)
        table = pa.table({
            "user": pa.array(users, pa.string()), "scope": pa.array(scopes, pa.string()),
            "split": pa.array(np.array(["train", "valid", "test"], dtype=object)[code], pa.string()),
            "position": pa.array(t, pa.int32()),
            "history": pa.ListArray.from_arrays(pa.array(hist_off, pa.int32()), pa.array(values[hist_idx], pa.int32())),
            "target": pa.array(targets, pa.int32()), "target_domain": pa.array(target_domain, pa.string()),
            "candidates": cands,
        })  # fmt: skip
        for name, c in (("train", 0), ("valid", 1), ("test", 2)):
            parts[name].append(table.filter(pa.array(code == c)))
    return {name: pa.concat_tables(p) for name, p in parts.items() if p}


class Settings:
    def __init__(self, data: dict):
        from recplat.data.config import CandidatesConfig

        self.source = data["sources"][0]
        self.seed = int(data.get("seed", 42))
        self.kcore = data.get("kcore", {})
        self.window = int(data.get("split", {}).get("max_history", 10))
        self.candidates = CandidatesConfig(**data.get("candidates", {}))
        expected = {"kind": "amazon2018", "kcore.scope": "mixed", "sequences.scope": "mixed", "split.method": "leave_one_out",
                    "candidates.pool": "target_domain"}
        got = {"kind": self.source["kind"], "kcore.scope": self.kcore.get("scope", "mixed"),
               "sequences.scope": data.get("sequences", {}).get("scope", "mixed"),
               "split.method": data.get("split", {}).get("method", "leave_one_out"), "candidates.pool": self.candidates.pool}
        if got != expected:
            raise SystemExit(f"columnar_prepare implements only the benchmark's config: {got} != {expected}")


def prepare(data: dict, out: Path) -> dict:
    cfg = Settings(data)
    counts, t0 = {}, time.time()
    inter, raw_items = read_corpus(cfg.source)
    counts["read_interactions"], counts["read_items"] = inter.height, raw_items.height
    items = clean_titles(raw_items)
    inter = inter.join(items.select(["domain", "item"]), on=["domain", "item"], how="semi", maintain_order="left")
    counts["after_titles"] = inter.height
    inter = inter.unique(keep="first", maintain_order=True)
    counts["after_dedupe"] = inter.height
    inter, counts["kcore_rounds"] = kcore(inter, int(cfg.kcore.get("user", 5)), int(cfg.kcore.get("item", 5)))
    counts["after_kcore"] = inter.height

    popular = inter.group_by(["domain", "item"]).len()
    items = items.join(popular.select(["domain", "item"]), on=["domain", "item"], how="semi").sort(["domain", "item"])
    items = items.with_columns(item_idx=pl.int_range(1, items.height + 1, dtype=pl.Int32))
    inter = inter.join(items.select(["domain", "item", "item_idx"]), on=["domain", "item"], how="left")
    popularity = np.zeros(items.height + 1, dtype=np.int64)
    counted = popular.join(items.select(["domain", "item", "item_idx"]), on=["domain", "item"])
    popularity[counted["item_idx"].to_numpy()] = counted["len"].to_numpy()

    seqs = sequences(inter).to_arrow().cast(SEQUENCES)  # polars writes large_* types
    splits = examples(seqs, items, popularity, cfg, cfg.seed)
    counts.update({f"examples_{k}": v.num_rows for k, v in splits.items()}, sequences=seqs.num_rows, items=items.height)

    out.mkdir(parents=True, exist_ok=True)
    items.write_parquet(out / "items.parquet")
    inter.sort(["user", "domain", "timestamp", "item", "rating"]).write_parquet(out / "interactions.parquet")
    pq.write_table(seqs, out / "sequences.parquet")
    (out / "examples").mkdir(exist_ok=True)
    for name, table in splits.items():
        pq.write_table(table, out / "examples" / f"{name}.parquet")
    per_domain = inter.group_by("domain").agg(users=pl.col("user").n_unique(), items=pl.col("item").n_unique(), interactions=pl.len())
    counts["stats"] = per_domain.sort("domain").to_dicts()
    counts["seconds"] = round(time.time() - t0, 2)
    (out / "counts.json").write_text(json.dumps(counts, indent=1))
    return counts


def compare(recplat_out: Path, out: Path) -> list[str]:
    """Differences between recplat's prepared dataset and this one (empty: the same data)."""
    from recplat.data.writer import read_table_dir

    problems = []
    theirs_items = pq.read_table(recplat_out / "items.parquet").select(["item_idx", "domain", "item", "title"])
    mine_items = pq.read_table(out / "items.parquet").select(["item_idx", "domain", "item", "title"])
    if not theirs_items.cast(mine_items.schema).equals(mine_items):
        problems.append("items differ")
    key = [("user", "ascending"), ("position", "ascending")]
    for split in ("train", "valid", "test"):
        theirs = read_table_dir(recplat_out / "examples" / split)
        mine = pq.read_table(out / "examples" / f"{split}.parquet")
        cols = ["user", "position", "history", "target", "target_domain", "candidates"]
        if theirs.num_rows != mine.num_rows:
            problems.append(f"{split}: {theirs.num_rows} rows in recplat's, {mine.num_rows} here")
        elif not theirs.sort_by(key).select(cols).equals(mine.sort_by(key).select(cols)):
            problems.append(f"{split}: same row count ({mine.num_rows:,}), different rows")
    theirs_seqs = read_table_dir(recplat_out / "sequences").sort_by([("user", "ascending")])
    mine_seqs = pq.read_table(out / "sequences.parquet").sort_by([("user", "ascending")])
    if not theirs_seqs.equals(mine_seqs.cast(theirs_seqs.schema)):
        problems.append("sequences differ")
    return problems


def main() -> int:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path, help="a PrepareConfig YAML (the benchmark writes prepare_<n>.yaml)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--check", type=Path, metavar="RECPLAT_OUT", help="compare with recplat's prepared dataset")
    args = ap.parse_args()
    if args.check is None:
        counts = prepare(yaml.safe_load(args.config.read_text()), args.out)
        print(json.dumps({k: v for k, v in counts.items() if k != "stats"}))
        return 0
    problems = compare(args.check, args.out)
    print("same items, sequences and examples" if not problems else "\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
