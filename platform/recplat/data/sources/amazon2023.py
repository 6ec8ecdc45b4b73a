"""Amazon Reviews 2023 (Hou et al. 2024; amazon-reviews-2023.github.io).

Files in `source.path`, per configured domain (plain or .gz):
- `<Domain>.jsonl`: user_id, parent_asin, rating, timestamp in MILLISECONDS (stored as seconds,
  floor division); the item is `parent_asin`, which groups a product's variants (`asin`);
- `meta_<Domain>.jsonl`: parent_asin, title, main_category, store, categories (general to specific).
`price` is not kept: the dump mixes numbers and strings in it, which would defeat the whole-file
JSON parser for every file.
"""

from __future__ import annotations

import pyarrow as pa

from recplat.data.sources import ReadResult, ReadTask, jsonlines, lines

KIND = "amazon2023"

REVIEW_KEYS = {"user": "user_id", "item": "parent_asin", "rating": "rating", "timestamp": "timestamp"}
META_FIELDS = pa.schema(
    [
        ("parent_asin", pa.string()),
        ("title", pa.string()),
        ("main_category", pa.string()),
        ("store", pa.string()),
        ("categories", pa.list_(pa.string())),
    ]
)


def plan(source) -> list[ReadTask]:
    """Per domain in config order: its reviews, then its meta file."""
    tasks = []
    for domain in source.domains:
        reviews = lines.find_file(source.path, f"{domain}.jsonl", f"reviews of domain {domain}")
        meta = lines.find_file(source.path, f"meta_{domain}.jsonl", f"metadata of domain {domain}")
        tasks.append(ReadTask(KIND, "interactions", reviews, domain))
        tasks.append(ReadTask(KIND, "items", meta, domain))
    return tasks


def read(task: ReadTask, strict: bool) -> ReadResult:
    if task.role == "items":
        return jsonlines.read_items(task, strict, META_FIELDS, meta_item)
    return jsonlines.read_interactions(task, strict, REVIEW_KEYS, timestamp_divisor=1000)


def meta_item(record: dict) -> tuple:
    """(item, title, category, attributes); category = the most specific of `categories`, else
    `main_category`."""
    item = lines.text_field(record.get("parent_asin"), "parent_asin")
    categories = jsonlines.text_list(record.get("categories"))
    main_category = jsonlines.optional_text(record.get("main_category"))
    category = next((c for c in reversed(categories) if c.strip()), None) or main_category or None
    attributes = lines.attributes_json(
        {
            "main_category": main_category,
            "store": jsonlines.optional_text(record.get("store")),
            "categories": categories,
        }
    )
    return item, jsonlines.optional_text(record.get("title")), category, attributes
