"""Amazon 2014 (McAuley et al.; jmcauley.ucsd.edu/data/amazon): MoLoRec's e-commerce domains
(docs/papers.md §3.3).

Files in `source.path`, per configured domain (plain or .gz):
- `reviews_<Domain>_5.json`: JSON lines with reviewerID, asin, overall, unixReviewTime;
- `meta_<Domain>.json`: one Python dict literal per line (single quotes, None), NOT JSON. Lines
  are parsed with `ast.literal_eval`, which accepts literals only and never runs code. Keys:
  asin, title, categories (a list of category paths, each general to specific), brand, price.
"""

from __future__ import annotations

import ast

from recplat.data.sources import ReadResult, ReadTask, jsonlines, lines
from recplat.data.sources.lines import BadRecord, Rejects

KIND = "amazon2014"

REVIEW_KEYS = {"user": "reviewerID", "item": "asin", "rating": "overall", "timestamp": "unixReviewTime"}


def plan(source) -> list[ReadTask]:
    """Per domain in config order: its 5-core reviews, then its meta file."""
    tasks = []
    for domain in source.domains:
        reviews = lines.find_file(source.path, f"reviews_{domain}_5.json", f"5-core reviews of domain {domain}")
        meta = lines.find_file(source.path, f"meta_{domain}.json", f"metadata of domain {domain}")
        tasks.append(ReadTask(KIND, "interactions", reviews, domain))
        tasks.append(ReadTask(KIND, "items", meta, domain))
    return tasks


def read(task: ReadTask, strict: bool) -> ReadResult:
    if task.role == "interactions":
        return jsonlines.read_interactions(task, strict, REVIEW_KEYS)
    # literals have no whole-file parser: meta files are read line by line
    rejects = Rejects(task.path, strict)
    rows = lines.parse_lines(task.path, parse_meta_line, rejects)
    return lines.items_from_rows(rows, task.domain, rejects)


def parse_meta_line(text: str) -> tuple:
    """(item, title, category, attributes) of one literal line; the category is the most specific
    entry of the first category path."""
    try:
        record = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise BadRecord("invalid_literal") from None
    if not isinstance(record, dict):
        raise BadRecord("invalid_literal")
    asin = lines.text_field(record.get("asin"), "asin")
    raw_paths = record.get("categories") or []
    paths = [jsonlines.text_list(path) for path in (raw_paths if isinstance(raw_paths, list) else [raw_paths])]
    category = next((c for path in paths for c in reversed(path) if c.strip()), None)
    attributes = lines.attributes_json(
        {
            "brand": jsonlines.optional_text(record.get("brand")),
            "price": record.get("price") if isinstance(record.get("price"), (int, float, str)) else None,
            "categories": [p for p in paths if p],
        }
    )
    return asin, jsonlines.optional_text(record.get("title")), category, attributes
