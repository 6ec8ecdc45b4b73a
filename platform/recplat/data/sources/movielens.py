"""MovieLens (GroupLens): ml-100k, ml-1m, ml-latest and ml-latest-small, one domain.

MoLoRec's movie scenario uses ML-1M (docs/papers.md §3.3). `source.path` is the extracted directory:
- ml-100k: `u.data` (tab-separated user, item, rating, timestamp; no header) and `u.item`
  ('|'-separated, latin-1: id|title|release date|video release date|IMDb URL|19 genre flags);
- ml-1m: `ratings.dat` (UserID::MovieID::Rating::Timestamp) and `movies.dat`
  (MovieID::Title::Genres with genres '|'-separated; latin-1);
- ml-latest, ml-latest-small: `ratings.csv` (header userId,movieId,rating,timestamp) and
  `movies.csv` (movieId,title,genres; quoted CSV, utf-8).
Items keep their genres ('|'-joined) as category, and year and genres in attributes.
"""

from __future__ import annotations

import csv
import re

from recplat.data.sources import ReadResult, ReadTask, delimited, lines
from recplat.data.sources.lines import BadRecord, Rejects
from recplat.errors import DataError

KIND = "movielens"

# ml-100k u.genre, in the order of u.item's 19 flags
GENRES_100K = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]
NO_GENRES = "(no genres listed)"  # ml-latest's placeholder
YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
CANONICAL = ["user", "item", "rating", "timestamp"]
FILES = {  # variant -> (interactions file, items file)
    "ml-100k": ("u.data", "u.item"),
    "ml-1m": ("ratings.dat", "movies.dat"),
    "ml-latest": ("ratings.csv", "movies.csv"),
    "ml-latest-small": ("ratings.csv", "movies.csv"),
}


def plan(source) -> list[ReadTask]:
    ratings, movies = FILES[source.variant]
    options = {"variant": source.variant}
    return [
        ReadTask(KIND, "interactions", lines.find_file(source.path, ratings, f"{source.variant} ratings", gz=False),
                 source.domain, options),
        ReadTask(KIND, "items", lines.find_file(source.path, movies, f"{source.variant} movies", gz=False),
                 source.domain, options),
    ]


def read(task: ReadTask, strict: bool) -> ReadResult:
    variant = task.options["variant"]
    if task.role == "interactions":
        return delimited.read_interactions(task, strict, ratings_layout(task.path, variant))
    if variant == "ml-100k":
        parse, encoding, skip = parse_100k_item, "latin-1", 0
    elif variant == "ml-1m":
        parse, encoding, skip = parse_1m_movie, "latin-1", 0
    else:
        parse, encoding, skip = movies_csv_parser(task.path), "utf-8", 1
    rejects = Rejects(task.path, strict)
    rows = lines.parse_lines(task.path, parse, rejects, encoding=encoding, skip=skip)
    return lines.items_from_rows(rows, task.domain, rejects)


def ratings_layout(path: str, variant: str) -> delimited.Layout:
    keys = {name: name for name in CANONICAL}
    if variant == "ml-100k":
        return delimited.Layout(columns=CANONICAL, keys=keys, delimiter="\t")
    if variant == "ml-1m":
        return delimited.Layout(columns=CANONICAL, keys=keys, delimiter="::")
    columns = delimited.header_columns(path)
    keys = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
    _require(path, columns, keys.values())
    return delimited.Layout(columns=columns, keys=keys, quoted=True, header=True)


def _require(path: str, columns: list[str], names) -> None:
    missing = [name for name in names if name not in columns]
    if missing:
        raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)} (has {', '.join(columns)})")


def movie_item(item: str, title: str, genres: list[str], release_date: str | None = None) -> tuple:
    """(item, title, category, attributes); the year comes from the release date, else the title."""
    year = None
    if release_date and release_date[-4:].isdigit():
        year = int(release_date[-4:])
    elif match := YEAR_IN_TITLE.search(title):
        year = int(match.group(1))
    attributes = lines.attributes_json({"year": year, "genres": genres, "release_date": release_date})
    return item, title, "|".join(genres) or None, attributes


def parse_100k_item(text: str) -> tuple:
    parts = text.split("|")
    if len(parts) != 5 + len(GENRES_100K):
        raise BadRecord("bad_columns")
    flags = parts[5:]
    if any(flag not in ("0", "1") for flag in flags):
        raise BadRecord("bad_value:genres")
    genres = [genre for genre, flag in zip(GENRES_100K, flags) if flag == "1"]
    return movie_item(lines.text_field(parts[0], "item"), parts[1], genres, parts[2] or None)


def parse_1m_movie(text: str) -> tuple:
    parts = text.split("::")
    if len(parts) != 3:
        raise BadRecord("bad_columns")
    return movie_item(lines.text_field(parts[0], "item"), parts[1], _genres(parts[2]))


def movies_csv_parser(path: str):
    columns = delimited.header_columns(path)
    _require(path, columns, ["movieId", "title", "genres"])
    at = {name: columns.index(name) for name in ("movieId", "title", "genres")}

    def parse(text: str) -> tuple:
        parts = next(csv.reader([text]))
        if len(parts) != len(columns):
            raise BadRecord("bad_columns")
        item = lines.text_field(parts[at["movieId"]], "movieId")
        return movie_item(item, parts[at["title"]], _genres(parts[at["genres"]]))

    return parse


def _genres(text: str) -> list[str]:
    return [] if text in ("", NO_GENRES) else text.split("|")
