"""sources/synthetic.py: the reader contract (plan -> tasks with user ranges, read -> ReadResult)."""

import pyarrow as pa

from recplat.data import schema, synth
from recplat.data.config import SyntheticSource
from recplat.data.sources import plan_reads, run_read


def test_plan_one_items_task_per_domain_and_user_chunks():
    src = SyntheticSource(kind="synthetic", users=250, users_per_task=100, domains=["Books", "Toys"])
    tasks = plan_reads(src)
    assert [(t.role, t.domain) for t in tasks[:2]] == [("items", "Books"), ("items", "Toys")]
    ranges = [(t.options["user_start"], t.options["user_stop"]) for t in tasks[2:]]
    assert ranges == [(0, 100), (100, 200), (200, 250)]
    assert all(t.kind == "synthetic" and t.role == "interactions" for t in tasks[2:])


def test_read_gives_the_generated_rows():
    src = SyntheticSource(kind="synthetic", users=90, users_per_task=40, items_per_domain=30, domains=["Books", "Toys"])
    results = [run_read(t) for t in plan_reads(src)]
    items = pa.concat_tables([r.items for r in results])
    inter = pa.concat_tables([r.interactions for r in results])
    assert items.schema == schema.ITEMS and inter.schema == schema.INTERACTIONS
    assert items.num_rows == 60 and items.column("item").to_pylist()[:2] == ["Books-00000", "Books-00001"]
    assert inter.equals(synth.generate_interactions(src, 0, 90))
    for r in results:
        assert r.rejects.num_rows == 0
        assert r.records == r.interactions.num_rows + r.items.num_rows
