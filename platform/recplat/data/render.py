"""Prompt rendering: examples + item titles -> the text each method family reads.

Templates are data (templates/default.yaml, overridable by `render.templates`); this module only
fills them. Key columns of every output: user, scope, split, position (rows stay in input order).

| family  | text columns (+ item-id columns in text order)                          | spec  |
|---------|--------------------------------------------------------------------------|-------|
| llmrec  | user_text = concat(title + "; ") over the history window                 | §1.4  |
| xcross  | history_text, choices (list<string>), label (int32), choice_items         | §2.2  |
| molorec | system, prompt, answer, candidate_items                                   | §3.2  |
| cprec   | prompt, answer, candidate_items                                           | §4.3  |
| llara   | prompt, more_prompts (list<string>), answer, history_items, candidate_items | §4.1 |

Shuffle (xcross, molorec, cprec, llara; docs/data-plane.md "render"). For one example let
`c = [target] + candidates` (the stored candidates in stored order) and `k = len(c)`. Then
`order = argsort(U("render:<family>", H(user), H(scope), split_code, position, k), kind="stable")`
and the shuffled list is `[c[order[j]] for j in range(k)]`; the target ends at the `j` with
`order[j] == 0` (X-Cross `label`). MoLoRec's answer is the target title followed by the first
`answer_negatives` (4) non-target entries of the shuffled list, joined by "||".
`render.title_words` applies to X-Cross only (history titles and choices cut to that many words).
LLaRA's `more_prompts`: the example under each of the templates in `llara.more_prompts`, in order
(LLaRA draws one template per training batch; `prompt` is the first, the one evaluation uses).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.config import load_yaml
from recplat.data import seeded
from recplat.data.config import RenderConfig
from recplat.errors import ConfigError

DEFAULT_TEMPLATES = Path(__file__).parent / "templates" / "default.yaml"
FAMILIES = ("llmrec", "xcross", "molorec", "cprec", "llara")
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
KEY_FIELDS = [("user", pa.string()), ("scope", pa.string()), ("split", pa.string()), ("position", pa.int32())]
_IDS = pa.list_(pa.int32())
TEXT_FIELDS = {
    "llmrec": [("user_text", pa.string())],
    "xcross": [("history_text", pa.string()), ("choices", pa.list_(pa.string())), ("label", pa.int32()),
               ("choice_items", _IDS)],
    "molorec": [("system", pa.string()), ("prompt", pa.string()), ("answer", pa.string()),
                ("candidate_items", _IDS)],
    "cprec": [("prompt", pa.string()), ("answer", pa.string()), ("candidate_items", _IDS)],
    "llara": [("prompt", pa.string()), ("more_prompts", pa.list_(pa.string())), ("answer", pa.string()),
              ("history_items", _IDS), ("candidate_items", _IDS)],
}
# placeholders each template key may use; keys not listed here are plain strings (or ints)
_PLACEHOLDERS = {
    ("molorec", "user"): {"history", "candidates"},
    ("cprec", "prompt"): {"history", "candidates", "domain"},
    ("llara", "prompt"): {"history", "candidates", "domain"},
    ("llara", "more_prompts"): {"history", "candidates", "domain"},
}
_INT_KEYS = {("molorec", "answer_negatives")}
_LIST_KEYS = {("llara", "more_prompts")}  # lists of strings, each a template
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def output_schema(family: str) -> pa.Schema:
    return pa.schema(KEY_FIELDS + TEXT_FIELDS[family])


# --- templates --------------------------------------------------------------------------------
def load_templates(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The packaged templates, with the keys of the YAML at `path` (if any) overriding them.

    Raises ConfigError naming the file and `family.key` for an unknown family or key, a value of
    the wrong type, or a placeholder the template cannot fill.
    """
    templates = load_yaml(DEFAULT_TEMPLATES)
    _check(templates, DEFAULT_TEMPLATES, templates)
    if path is None:
        return templates
    override = load_yaml(path)
    _check(override, path, templates)
    for family, keys in override.items():
        templates[family] = {**templates[family], **keys}
    return templates


def _check(data: dict, path: str | Path, known: dict) -> None:
    for family, keys in data.items():
        if family not in FAMILIES:
            raise ConfigError(f"{path}: unknown template family {family!r} (known: {', '.join(FAMILIES)})")
        if not isinstance(keys, dict):
            raise ConfigError(f"{path}: {family} must be a mapping of template keys")
        for key, value in keys.items():
            where = f"{path}: {family}.{key}"
            if key not in known.get(family, {}):
                raise ConfigError(f"{where}: unknown template key (known: {', '.join(known[family])})")
            if (family, key) in _INT_KEYS:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"{where}: must be a non-negative integer, got {value!r}")
                continue
            if (family, key) in _LIST_KEYS:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{where}: must be a list of strings, got {value!r}")
            elif not isinstance(value, str):
                raise ConfigError(f"{where}: must be a string, got {value!r}")
            for text in value if isinstance(value, list) else [value]:
                unknown = set(_PLACEHOLDER.findall(text)) - _PLACEHOLDERS.get((family, key), set())
                if unknown:
                    raise ConfigError(f"{where}: unknown placeholder(s) {sorted(unknown)}")


def _fill(template: str, values: dict[str, str]) -> str:
    """Substitute {name} in one pass (so braces inside titles are never re-read as placeholders)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


# --- row helpers ------------------------------------------------------------------------------
def _lists(table: pa.Table, name: str) -> list[np.ndarray]:
    """A list<int> column as one numpy array per row (null lists as empty)."""
    col = table.column(name)
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int32)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [values[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]


def shuffle_orders(
    seed: int, family: str, users, scopes, split_codes, positions, sizes: np.ndarray, block: int = 4096
) -> list[np.ndarray]:
    """Per row, `argsort(U("render:<family>", H(user), H(scope), split_code, position, k), stable)`.

    Rows with different k are drawn together: draws past a row's k are set to 2.0 (above any
    uniform), so a stable argsort puts them last and the first k entries are exactly the row's order.
    """
    keys = seeded.row_keys(
        seed, f"render:{family}", seeded.hash_strings(users), seeded.hash_strings(scopes),
        np.asarray(split_codes), np.asarray(positions),
    )
    sizes = np.asarray(sizes, dtype=np.int64)
    orders: list[np.ndarray] = []
    for lo in range(0, len(keys), block):
        k_blk = sizes[lo : lo + block]
        kmax = int(k_blk.max()) if len(k_blk) else 0
        draws = seeded.uniform(keys[lo : lo + block], kmax)
        draws[np.arange(kmax)[None, :] >= k_blk[:, None]] = 2.0
        order = np.argsort(draws, axis=1, kind="stable")
        orders.extend(order[i, : k_blk[i]] for i in range(len(k_blk)))
    return orders


def cut_words(title: str, words: int | None) -> str:
    return title if words is None else " ".join(title.split()[:words])


# --- the kernel -------------------------------------------------------------------------------
def render_family(
    examples: pa.Table, titles: np.ndarray, family: str, templates: dict, cfg: RenderConfig, seed: int
) -> pa.Table:
    """Render one family's text for a batch of `schema.EXAMPLES` rows (see the module docstring).

    `titles` is an object array indexed by item_idx (index 0 unused).
    """
    if family not in FAMILIES:
        raise ConfigError(f"render.families: unknown family {family!r} (known: {', '.join(FAMILIES)})")
    tpl = templates[family]
    keys = {name: examples.column(name).cast(typ) for name, typ in KEY_FIELDS}
    users = keys["user"].to_numpy(zero_copy_only=False)
    histories = _lists(examples, "history")
    cols: dict[str, list] = {}

    if family == "llmrec":
        cols["user_text"] = ["".join(t + tpl["item_suffix"] for t in titles[h]) for h in histories]
        return _table(family, keys, cols)

    targets = examples.column("target").to_numpy(zero_copy_only=False).astype(np.int32)
    negatives = _lists(examples, "candidates")
    choice_items = [np.concatenate([[t], c]).astype(np.int32) for t, c in zip(targets, negatives)]
    splits = keys["split"].to_pylist()
    unknown = set(splits) - set(SPLIT_CODES)
    if unknown:
        raise ValueError(f"render: unknown split name(s) {sorted(unknown)}")
    orders = shuffle_orders(
        seed, family, users, keys["scope"].to_numpy(zero_copy_only=False),
        np.array([SPLIT_CODES[s] for s in splits], dtype=np.int64),
        keys["position"].to_numpy(zero_copy_only=False), np.array([len(c) for c in choice_items]),
    )
    shuffled = [c[o] for c, o in zip(choice_items, orders)]

    if family == "xcross":
        words = cfg.title_words
        cols["history_text"] = [tpl["separator"].join(cut_words(t, words) for t in titles[h]) for h in histories]
        cols["choices"] = [[cut_words(t, words) for t in titles[s]] for s in shuffled]
        cols["label"] = [int(np.flatnonzero(o == 0)[0]) for o in orders]
        cols["choice_items"] = shuffled
    elif family == "molorec":
        sep, n_neg = tpl["separator"], tpl["answer_negatives"]
        cols["system"] = [tpl["system"]] * len(shuffled)
        cols["prompt"] = [
            _fill(tpl["user"], {"history": sep.join(titles[h]), "candidates": sep.join(titles[s])})
            for h, s in zip(histories, shuffled)
        ]
        cols["answer"] = [
            sep.join(titles[np.concatenate([[c[0]], c[o[o != 0][:n_neg]]]).astype(np.int64)])
            for c, o in zip(choice_items, orders)
        ]
        cols["candidate_items"] = shuffled
    elif family == "cprec":
        sep = tpl["separator"]
        cols["prompt"] = [
            _fill(tpl["prompt"], {"history": sep.join(titles[h]), "candidates": sep.join(titles[s]),
                                  "domain": tpl["domain"]})
            for h, s in zip(histories, shuffled)
        ]
        cols["answer"] = list(titles[targets])
        cols["candidate_items"] = shuffled
    else:  # llara
        sep, hm, cm = tpl["separator"], tpl["history_marker"], tpl["candidate_marker"]
        values = [{"history": sep.join(t + hm for t in titles[h]), "candidates": sep.join(t + cm for t in titles[s]),
                   "domain": tpl["domain"]} for h, s in zip(histories, shuffled)]
        cols["prompt"] = [_fill(tpl["prompt"], v) for v in values]
        cols["more_prompts"] = [[_fill(t, v) for t in tpl["more_prompts"]] for v in values]
        cols["answer"] = list(titles[targets])
        cols["history_items"] = histories
        cols["candidate_items"] = shuffled
    return _table(family, keys, cols)


def _table(family: str, keys: dict[str, pa.Array], cols: dict[str, list]) -> pa.Table:
    out = dict(keys)
    for name, typ in TEXT_FIELDS[family]:
        values = cols[name]
        if pa.types.is_list(typ) and pa.types.is_integer(typ.value_type):
            values = [np.asarray(v, dtype=np.int32) for v in values]
        out[name] = pa.array(values, type=typ)
    return pa.table(out, schema=output_schema(family))
