"""The LLM-Rec preset (`spiao`) follows LLM-Rec's preprocessing (spec §1.2 step 4, Table 1) on a
hand-built Amazon-2018 input: repeats of an item on later days are kept, same-timestamp ties are
ordered by (timestamp, item, rating) whatever the domain, #Training = #Interactions - 2 * #Users,
and stats.json equals counts taken from the written tables (issue #18)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import recplat.data
from recplat.config import load_config
from recplat.data.config import PrepareConfig
from recplat.data.pipeline import prepare
from recplat.data.writer import read_table_dir

SPIAO = Path(recplat.data.__file__).parent / "defaults" / "spiao.yaml"
DAY = 86400
T0 = 1_500_000_000
DOMAINS = ["Musical_Instruments", "Office_Products", "Prime_Pantry"]
DOMAIN_OF = {"B0OFF1": "Office_Products", "B0ZZZ": "Office_Products", "B0PAN1": "Prime_Pantry",
             "B0AAA": "Prime_Pantry", "B0MUS1": "Musical_Instruments", "B0MMM": "Musical_Instruments"}
RATINGS = [  # user, item, rating, timestamp
    # u1 rates B0OFF1 on days 1, 2 and 4; on day 5 two items share a timestamp across domains:
    # by item B0AAA (Pantry) < B0ZZZ (Office), so the test target is B0ZZZ; by domain it would be B0AAA
    ("u1", "B0OFF1", 5.0, T0 + 1 * DAY), ("u1", "B0OFF1", 4.0, T0 + 2 * DAY), ("u1", "B0PAN1", 3.0, T0 + 3 * DAY),
    ("u1", "B0OFF1", 5.0, T0 + 4 * DAY), ("u1", "B0ZZZ", 2.0, T0 + 5 * DAY), ("u1", "B0AAA", 4.0, T0 + 5 * DAY),
    # u2: B0MUS1 twice on one day; last timestamp ties B0AAA (Pantry) with B0MMM (Instruments)
    ("u2", "B0MUS1", 5.0, T0 + 1 * DAY), ("u2", "B0MUS1", 4.0, T0 + 1 * DAY + 3600), ("u2", "B0OFF1", 3.0, T0 + 2 * DAY),
    ("u2", "B0MMM", 2.0, T0 + 3 * DAY), ("u2", "B0AAA", 5.0, T0 + 3 * DAY),
    # u3: the same pantry item three days running, then an office item
    ("u3", "B0PAN1", 5.0, T0 + 1 * DAY), ("u3", "B0PAN1", 5.0, T0 + 2 * DAY), ("u3", "B0PAN1", 1.0, T0 + 3 * DAY),
    ("u3", "B0ZZZ", 4.0, T0 + 4 * DAY),
]


def write_amazon2018(folder: Path) -> None:
    folder.mkdir()
    for domain in DOMAINS:
        lines = [f"{item},{user},{rating},{ts}" for user, item, rating, ts in RATINGS if DOMAIN_OF[item] == domain]
        (folder / f"{domain}.csv").write_text("\n".join(lines) + "\n")
        meta = [json.dumps({"asin": item, "title": f"Title of {item}"}) for item, d in DOMAIN_OF.items() if d == domain]
        (folder / f"meta_{domain}.json").write_text("\n".join(meta) + "\n")


@pytest.fixture(scope="module")
def spiao_dataset(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("spiao")
    write_amazon2018(root / "raw")
    cfg = load_config(PrepareConfig, SPIAO, [f"sources.0.path={root / 'raw'}", f"sources.0.domains={DOMAINS}",
                                              "kcore.user=3", "kcore.item=1", "num_partitions=2"],
                      relative_to_file=False)
    assert cfg.sequences.tie_order == ["item", "rating"] and not cfg.sequences.drop_consecutive_repeats
    prepare(cfg, root / "ds", show_progress=False)
    return root / "ds"


def test_spiao_keeps_repeats_and_orders_ties_by_item(spiao_dataset):
    items = {r["item_idx"]: r["item"] for r in pq.read_table(spiao_dataset / "items.parquet").to_pylist()}
    seqs = {r["user"]: [items[i] for i in r["items"]] for r in read_table_dir(spiao_dataset / "sequences").to_pylist()}
    assert seqs == {
        "u1": ["B0OFF1", "B0OFF1", "B0PAN1", "B0OFF1", "B0AAA", "B0ZZZ"],
        "u2": ["B0MUS1", "B0MUS1", "B0OFF1", "B0AAA", "B0MMM"],
        "u3": ["B0PAN1", "B0PAN1", "B0PAN1", "B0ZZZ"],
    }
    test = {r["user"]: items[r["target"]] for r in read_table_dir(spiao_dataset / "examples" / "test").to_pylist()}
    assert test == {"u1": "B0ZZZ", "u2": "B0MMM", "u3": "B0ZZZ"}
    stages = {s["stage"]: s for s in json.loads((spiao_dataset / "manifest.json").read_text())["stages"]}
    assert stages["sequences"]["dropped"] == {} and stages["sequences"]["kept"] == len(RATINGS)


def test_stats_json_is_the_final_dataset_in_the_papers_columns(spiao_dataset):
    stats = json.loads((spiao_dataset / "stats.json").read_text())
    seqs = read_table_dir(spiao_dataset / "sequences").to_pylist()
    valid = read_table_dir(spiao_dataset / "examples" / "valid").to_pylist()
    test = read_table_dir(spiao_dataset / "examples" / "test").to_pylist()
    users = len(seqs)
    interactions = sum(len(s["items"]) for s in seqs)
    assert stats["all"]["users"] == users == 3 and stats["all"]["interactions"] == interactions == len(RATINGS)
    assert stats["all"]["training"] == interactions - 2 * users  # LLM-Rec Table 1's #Training
    assert stats["all"]["items"] == len({(d, i) for s in seqs for d, i in zip(s["domains"], s["items"])}) == 6
    assert stats["all"]["testing"] == len(test) and stats["all"]["validation"] == len(valid)
    training = Counter(d for s in seqs for d in s["domains"][:-2])
    per_domain = Counter(d for s in seqs for d in s["domains"])
    testing = Counter(e["target_domain"] for e in test)
    for row in stats["domains"]:
        d = row["domain"]
        assert (row["interactions"], row["training"], row["testing"]) == (per_domain[d], training[d], testing[d]), d
        assert row["users"] == sum(d in s["domains"] for s in seqs)
    assert testing == {"Office_Products": 2, "Musical_Instruments": 1}
