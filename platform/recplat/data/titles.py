"""The titles stage: clean item titles, drop unusable items, and mark interactions on them.

LLM-based recommenders read items by their title, so an item without a usable title cannot be
shown to the model (LLM-Rec §1.2 keeps only items with a title; its code writes "None" instead,
our `on_missing: placeholder`). Semantics: docs/data-plane.md, "Exact semantics" → titles:

- items are taken in READ ORDER; the first row of each (domain, item) counts, later rows get
  `duplicate_item` (whatever their title);
- a title is cleaned by `html.unescape` once, then `" ".join(title.split())`;
- reasons, first match wins: null title → `title_missing`, empty after cleaning → `title_empty`,
  `cleaned.lower() == "nan"` → `title_nan`; with `on_missing: placeholder` such items are kept
  with the placeholder title;
- an interaction whose (domain, item) has no item row gets `no_metadata`; one whose item was
  dropped for its title gets `no_title`.
"""

from __future__ import annotations

import html

import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import schema
from recplat.data.accounting import DROP, with_reason
from recplat.data.config import TitlesConfig

TITLE_REASONS = ("title_missing", "title_empty", "title_nan")


def clean_title(raw: str | None) -> tuple[str | None, str | None]:
    """(cleaned title, reason or None). A missing title cleans to None."""
    if raw is None:
        return None, "title_missing"
    cleaned = " ".join(html.unescape(raw).split())
    if not cleaned:
        return cleaned, "title_empty"
    if cleaned.lower() == "nan":
        return cleaned, "title_nan"
    return cleaned, None


def _first_occurrence(keys: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Boolean mask: True on the first row (in table order) of each key."""
    n = len(keys)
    index = pa.array(range(n), type=pa.int64())
    firsts = (
        pa.table({"key": keys, "i": index})
        .group_by("key", use_threads=False)
        .aggregate([("i", "min")])
        .column("i_min")
    )
    return pc.is_in(index, value_set=firsts.combine_chunks())


def annotate_titles(items: pa.Table, cfg: TitlesConfig) -> pa.Table:
    """Items in read order → `schema.ITEMS` columns with cleaned titles, plus `drop_reason`.

    Rows are neither reordered nor removed. Every row's title is its own cleaned title (null when
    missing); rows kept under `on_missing: placeholder` carry `cfg.placeholder` instead.
    """
    items = schema.conform(items, schema.ITEMS)
    is_first = _first_occurrence(schema.item_keys(items.column("domain"), items.column("item")))
    first = is_first.to_pylist()
    titles: list[str | None] = []
    reasons: list[str | None] = []
    cache: dict[str, tuple[str | None, str | None]] = {}  # titles repeat (variants, bundles)
    for raw, is_first_row in zip(items.column("title").to_pylist(), first):
        if raw is None:
            title, reason = clean_title(raw)
        else:
            if raw not in cache:
                cache[raw] = clean_title(raw)
            title, reason = cache[raw]
        if not is_first_row:
            reason = "duplicate_item"
        elif reason is not None and cfg.on_missing == "placeholder":
            title, reason = cfg.placeholder, None
        titles.append(title)
        reasons.append(reason)
    items = items.set_column(items.schema.get_field_index("title"), "title", pa.array(titles, pa.string()))
    return with_reason(items, pa.array(reasons, pa.string()))


def item_key_sets(annotated: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(kept item keys, keys of items dropped for their title) from `annotate_titles`'s output.

    A key in neither set has no item row at all. `duplicate_item` rows add no key: their key
    belongs to the item's first row, kept or dropped.
    """
    keys = schema.item_keys(annotated.column("domain"), annotated.column("item"))
    reason = annotated.column(DROP)
    kept = keys.filter(pc.is_null(reason))
    dropped = keys.filter(pc.is_in(reason, value_set=pa.array(TITLE_REASONS)))
    return pc.unique(kept.combine_chunks()), pc.unique(dropped.combine_chunks())


def dropped_items(annotated: pa.Table) -> pa.Table:
    """The rows of `annotate_titles`'s output that carry a reason, as `schema.DROPPED_ITEMS`."""
    rows = annotated.filter(pc.is_valid(annotated.column(DROP)))
    return pa.table(
        {
            "item": rows.column("item"),
            "domain": rows.column("domain"),
            "title": rows.column("title"),
            "reason": rows.column(DROP),
        },
        schema=schema.DROPPED_ITEMS,
    )


def annotate_unknown_items(interactions: pa.Table, kept_keys: pa.Array, dropped_keys: pa.Array) -> pa.Table:
    """Interactions + `drop_reason`: null if the (domain, item) key is kept, `no_title` if its
    item was dropped by the titles stage, `no_metadata` if it has no item row at all.

    Input rows are assumed to be all kept so far: an existing `drop_reason` column is replaced.
    """
    keys = schema.item_keys(interactions.column("domain"), interactions.column("item"))
    in_kept = pc.is_in(keys, value_set=kept_keys)
    in_dropped = pc.is_in(keys, value_set=dropped_keys)
    missing = pa.scalar(None, pa.string())
    unknown = pc.if_else(in_dropped, pa.scalar("no_title"), pa.scalar("no_metadata"))
    reason = pc.if_else(in_kept, missing, unknown)
    if isinstance(reason, pa.ChunkedArray):
        reason = reason.combine_chunks()
    return with_reason(interactions, reason)
