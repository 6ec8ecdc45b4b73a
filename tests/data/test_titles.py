"""titles.py: title cleaning, item drop reasons, interactions on unknown items (hand-computed)."""

import pyarrow as pa
import pytest

from recplat.data import schema
from recplat.data.accounting import DROP
from recplat.data.config import TitlesConfig
from recplat.data.titles import (
    annotate_titles,
    annotate_unknown_items,
    clean_title,
    dropped_items,
    item_key_sets,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Harry Potter &amp; the Stone \n", ("Harry Potter & the Stone", None)),
        ("A\t\t B\u00a0 C", ("A B C", None)),  # any whitespace run → one space
        ("Tom &amp;amp; Jerry", ("Tom &amp; Jerry", None)),  # unescaped once only
        ("&quot;Heat&quot; &#39;95", ('"Heat" \'95', None)),
        ("&nbsp;", ("", "title_empty")),  # unescapes to U+00A0, which is whitespace
        ("", ("", "title_empty")),
        ("   ", ("", "title_empty")),
        (None, (None, "title_missing")),
        (" NaN ", ("NaN", "title_nan")),
        ("nan", ("nan", "title_nan")),
        ("nan bread", ("nan bread", None)),
    ],
)
def test_clean_title(raw, expected):
    assert clean_title(raw) == expected


def _items():
    rows = [
        ("i1", "Books", "A &amp; B"),
        ("i2", "Books", None),
        ("i1", "Books", "Other title"),  # later row of a kept item
        ("i1", "Movies", " X "),  # same raw id, other domain: another item
        ("i3", "Books", "   "),
        ("i4", "Books", "NAN"),
        ("i2", "Books", "Good"),  # later row of an item whose first row has no title
    ]
    return pa.table(
        {
            "item": [r[0] for r in rows],
            "domain": [r[1] for r in rows],
            "title": [r[2] for r in rows],
            "category": ["c"] * len(rows),
            "attributes": ["{}"] * len(rows),
        },
        schema=schema.ITEMS,
    )


def test_annotate_titles_drop_mode():
    out = annotate_titles(_items(), TitlesConfig())
    assert out.column_names == schema.ITEMS.names + [DROP]
    assert out.column("item").to_pylist() == ["i1", "i2", "i1", "i1", "i3", "i4", "i2"]  # read order
    assert out.column("title").to_pylist() == ["A & B", None, "Other title", "X", "", "NAN", "Good"]
    assert out.column(DROP).to_pylist() == [
        None,
        "title_missing",
        "duplicate_item",
        None,
        "title_empty",
        "title_nan",
        "duplicate_item",
    ]


def test_annotate_titles_placeholder_mode():
    out = annotate_titles(_items(), TitlesConfig(on_missing="placeholder", placeholder="None"))
    assert out.column("title").to_pylist() == ["A & B", "None", "Other title", "X", "None", "None", "Good"]
    assert out.column(DROP).to_pylist() == [None, None, "duplicate_item", None, None, None, "duplicate_item"]


def test_duplicate_item_keeps_first_even_when_later_is_better():
    items = _items().slice(0, 3)  # i1 ok, i2 missing, i1 again
    out = annotate_titles(items, TitlesConfig())
    assert out.column("title").to_pylist()[0] == "A & B"
    assert out.column(DROP).to_pylist() == [None, "title_missing", "duplicate_item"]


def test_key_sets_and_dropped_items():
    out = annotate_titles(_items(), TitlesConfig())
    kept, dropped = item_key_sets(out)
    assert sorted(kept.to_pylist()) == ["Books\x1fi1", "Movies\x1fi1"]
    assert sorted(dropped.to_pylist()) == ["Books\x1fi2", "Books\x1fi3", "Books\x1fi4"]
    table = dropped_items(out)
    assert table.schema == schema.DROPPED_ITEMS
    assert table.column("reason").to_pylist() == [
        "title_missing",
        "duplicate_item",
        "title_empty",
        "title_nan",
        "duplicate_item",
    ]


def _interactions():
    pairs = [("Books", "i1"), ("Books", "i2"), ("Books", "i9"), ("Movies", "i1"), ("Music", "i1"), ("Books", "i4")]
    return pa.table(
        {
            "user": [f"u{k}" for k in range(len(pairs))],
            "item": [p[1] for p in pairs],
            "domain": [p[0] for p in pairs],
            "timestamp": pa.array(range(len(pairs)), pa.int64()),
            "rating": pa.array([5.0] * len(pairs), pa.float32()),
        },
        schema=schema.INTERACTIONS,
    )


def test_annotate_unknown_items():
    kept, dropped = item_key_sets(annotate_titles(_items(), TitlesConfig()))
    out = annotate_unknown_items(_interactions(), kept, dropped)
    assert out.column_names == schema.INTERACTIONS.names + [DROP]
    assert out.column(DROP).to_pylist() == [None, "no_title", "no_metadata", None, "no_metadata", "no_title"]
