"""Amazon Review Data 2018 ("v2", Ni et al. 2019): LLM-Rec's SPIAO domains (docs/papers.md §1.2),
X-Cross's four domains (§2.8) and CPRec's behavioural corpus (§4.4).

Files in `source.path`, per configured domain (plain or .gz):
- ratings="csv": `<Domain>.csv`, no header, `item,user,rating,timestamp` (seconds);
- ratings="reviews": 5-core `<Domain>_5.json`, JSON lines with reviewerID, asin, overall,
  unixReviewTime (other keys ignored);
- `meta_<Domain>.json`: JSON lines with asin, title, brand, category (a list from general to
  specific), main_cat, price.
Every row gets the domain name as written in the config.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from recplat.data.sources import ReadResult, ReadTask, delimited, jsonlines, lines

KIND = "amazon2018"

RATINGS = delimited.Layout(
    columns=["item", "user", "rating", "timestamp"],
    keys={"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"},
    quoted=True,
)
REVIEW_KEYS = {"user": "reviewerID", "item": "asin", "rating": "overall", "timestamp": "unixReviewTime"}
META_FIELDS = pa.schema(
    [
        ("asin", pa.string()),
        ("title", pa.string()),
        ("brand", pa.string()),
        ("category", pa.list_(pa.string())),
        ("main_cat", pa.string()),
        ("price", pa.string()),
    ]
)


def plan(source) -> list[ReadTask]:
    """Per domain in config order: its ratings (or reviews) file, then its meta file."""
    tasks = []
    for domain in source.domains:
        if source.ratings == "csv":
            ratings = lines.find_file(source.path, f"{domain}.csv", f"ratings CSV of domain {domain}")
        else:
            ratings = lines.find_file(source.path, f"{domain}_5.json", f"5-core reviews of domain {domain}")
        meta = lines.find_file(source.path, f"meta_{domain}.json", f"metadata of domain {domain}")
        tasks.append(ReadTask(KIND, "interactions", ratings, domain))
        tasks.append(ReadTask(KIND, "items", meta, domain))
    return tasks


def read(task: ReadTask, strict: bool) -> ReadResult:
    if task.role == "items":
        return jsonlines.read_items(task, strict, META_FIELDS, meta_item)
    name = Path(task.path).name
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return delimited.read_interactions(task, strict, RATINGS)
    return jsonlines.read_interactions(task, strict, REVIEW_KEYS)


def meta_item(record: dict) -> tuple:
    """(item, title, category, attributes) of one meta record; the category is the most specific
    non-blank entry of `category`, else `main_cat`."""
    asin = lines.text_field(record.get("asin"), "asin")
    categories = jsonlines.text_list(record.get("category"))
    main_cat = jsonlines.optional_text(record.get("main_cat"))
    category = next((c for c in reversed(categories) if c.strip()), None) or main_cat or None
    attributes = lines.attributes_json(
        {
            "brand": jsonlines.optional_text(record.get("brand")),
            "price": jsonlines.optional_text(record.get("price")),
            "main_cat": main_cat,
            "category": categories,
        }
    )
    return asin, jsonlines.optional_text(record.get("title")), category, attributes
