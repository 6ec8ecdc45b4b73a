"""NineRec (westlake-repl/NineRec; Zhang et al., TPAMI 2024): the Bilibili downstream datasets
CPRec fine-tunes on (Bili_Movie, Bili_Cartoon, ...; spec §4.6), one domain each.

`source.path` is a dataset's folder, `source.dataset` its name (e.g. Bili_Movie). Two files, in
the layout NineRec's own scripts read (no header lines in either):

- `<dataset>_pair.csv`: one interaction per line, `video_id,user_id,timestamp` (the column order
  of NineRec's get_behaviour.py, which sorts these pairs by timestamp into user sequences);
- `<dataset>_item.csv`: one video per line, `video_id,title,title_en` (a CSV with quoting: the
  Chinese title, then its English translation; NineRec's data_utils/preprocess.py `get_df`).

`source.language` picks the title LLaRA sees (en by default; zh: the original title). The file
names follow NineRec's `<name>_pair.csv` convention; the items file's name is our assumption
(`items_file` overrides it). Timestamps are integers in seconds (`timestamp_unit: ms` divides).
"""

from __future__ import annotations

import csv

from recplat.data.sources import ReadResult, ReadTask, delimited, lines
from recplat.data.sources.lines import BadRecord, Rejects

KIND = "ninerec"
PAIR_COLUMNS = ["item", "user", "timestamp"]  # video_id, user_id, timestamp


def plan(source) -> list[ReadTask]:
    domain = source.domain or source.dataset
    options = {"language": source.language, "timestamp_unit": source.timestamp_unit}
    pairs = lines.find_file(source.path, f"{source.dataset}_pair.csv", f"NineRec {source.dataset} pairs", gz=False)
    items_name = source.items_file or f"{source.dataset}_item.csv"
    items = lines.find_file(source.path, items_name, f"NineRec {source.dataset} items", gz=False)
    return [ReadTask(KIND, "interactions", pairs, domain, options), ReadTask(KIND, "items", items, domain, options)]


def read(task: ReadTask, strict: bool) -> ReadResult:
    if task.role == "interactions":
        layout = delimited.Layout(columns=PAIR_COLUMNS, keys={k: k for k in PAIR_COLUMNS}, delimiter=",",
                                  timestamp_divisor=1000 if task.options["timestamp_unit"] == "ms" else 1)
        return delimited.read_interactions(task, strict, layout)
    rejects = Rejects(task.path, strict)
    rows = lines.parse_lines(task.path, item_parser(task.options["language"]), rejects, encoding="utf-8-sig")
    return lines.items_from_rows(rows, task.domain, rejects)


def item_parser(language: str):
    def parse(text: str) -> tuple:
        parts = next(csv.reader([text]))
        if len(parts) != 3:
            raise BadRecord("bad_columns")
        item = lines.text_field(parts[0].strip(), "video_id")
        zh, en = parts[1].strip(), parts[2].strip()
        title = en if language == "en" else zh
        return item, title or None, None, lines.attributes_json({"title_zh": zh, "title_en": en})

    return parse
