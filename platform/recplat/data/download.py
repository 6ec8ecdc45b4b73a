"""`recplat data download`: the publishers' official files, resumable and verified.

    recplat data download amazon2018 --domains Office_Products Prime_Pantry --to data/raw/amazon2018
    recplat data download movielens --domains ml-1m --to data/raw/movielens

Each file is fetched into `<name>.part`; an interrupted run leaves the `.part`, and the next run asks
for the rest (`Range: bytes=<size>-`). The size is checked against what the server announces
(Content-Length, or the total in Content-Range), and the MD5 against the publisher's checksum file
where one is published (GroupLens's `<file>.md5`; the Amazon dumps publish none, so only their size
is checked). Only then is the `.part` renamed to its final name, so a final name always means a
complete file; one already there is skipped when its size matches the server's (a HEAD request).
`--base-url` replaces the publisher's host and keeps the path layout (mirrors, tests).

Pointing `recplat prepare` at DIR (files are written under exactly the names the readers in
`recplat/data/sources/` look for):
- amazon2018: `{kind: amazon2018, path: DIR, ratings: csv|reviews, domains: [...]}` reads
  `DIR/<Domain>.csv` (csv) or `DIR/<Domain>_5.json.gz` (reviews), and `DIR/meta_<Domain>.json.gz`;
- amazon2014: `{kind: amazon2014, path: DIR, domains: [...]}` reads `reviews_<Domain>_5.json.gz`
  and `meta_<Domain>.json.gz`;
- amazon2023: `{kind: amazon2023, path: DIR, domains: [...]}` reads `<Domain>.jsonl.gz` and
  `meta_<Domain>.jsonl.gz`;
- movielens: the zip is extracted into DIR, which gives `DIR/<variant>/`:
  `{kind: movielens, path: DIR/<variant>, variant: <variant>}`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from recplat.errors import ConfigError, DataError, RecplatError

# --- the publishers' files: plain data, one entry per source ------------------------------------
AMAZON2018_DOMAINS = (  # nijianmo.github.io/amazon: the 29 per-category files
    "AMAZON_FASHION", "All_Beauty", "Appliances", "Arts_Crafts_and_Sewing", "Automotive", "Books",
    "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music",
    "Electronics", "Gift_Cards", "Grocery_and_Gourmet_Food", "Home_and_Kitchen",
    "Industrial_and_Scientific", "Kindle_Store", "Luxury_Beauty", "Magazine_Subscriptions",
    "Movies_and_TV", "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden",
    "Pet_Supplies", "Prime_Pantry", "Software", "Sports_and_Outdoors", "Tools_and_Home_Improvement",
    "Toys_and_Games", "Video_Games",
)
AMAZON2014_DOMAINS = (  # jmcauley.ucsd.edu/data/amazon/index_2014.html: the 24 5-core files
    "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books",
    "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music",
    "Electronics", "Grocery_and_Gourmet_Food", "Health_and_Personal_Care", "Home_and_Kitchen",
    "Kindle_Store", "Movies_and_TV", "Musical_Instruments", "Office_Products",
    "Patio_Lawn_and_Garden", "Pet_Supplies", "Sports_and_Outdoors", "Tools_and_Home_Improvement",
    "Toys_and_Games", "Video_Games",
)
AMAZON2023_DOMAINS = (  # amazon-reviews-2023.github.io: 33 categories and "Unknown"
    "All_Beauty", "Amazon_Fashion", "Appliances", "Arts_Crafts_and_Sewing", "Automotive",
    "Baby_Products", "Beauty_and_Personal_Care", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics",
    "Gift_Cards", "Grocery_and_Gourmet_Food", "Handmade_Products", "Health_and_Household",
    "Health_and_Personal_Care", "Home_and_Kitchen", "Industrial_and_Scientific", "Kindle_Store",
    "Magazine_Subscriptions", "Movies_and_TV", "Musical_Instruments", "Office_Products",
    "Patio_Lawn_and_Garden", "Pet_Supplies", "Software", "Sports_and_Outdoors", "Subscription_Boxes",
    "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games", "Unknown",
)
MOVIELENS_VARIANTS = ("ml-100k", "ml-1m", "ml-latest-small", "ml-latest")


@dataclass(frozen=True)
class Source:
    """Where one source's files live. A file's local name is the last segment of its URL path."""

    host: str  # the publisher's URL prefix; --base-url replaces it
    layouts: dict[str, tuple[str, ...]]  # `ratings` choice -> URL paths ("{domain}" filled in); first = default
    domains: tuple[str, ...]  # the publisher's names (Amazon categories, MovieLens variants)
    md5: bool = False  # the publisher puts "<file>.md5" next to each file
    extract: bool = False  # a zip archive, extracted into the target directory once verified


_V2 = "/mcauley_group/data/amazon_v2"
SOURCES: dict[str, Source] = {
    "amazon2018": Source(
        host="https://datarepo.eng.ucsd.edu",
        layouts={
            "csv": (f"{_V2}/categoryFilesSmall/{{domain}}.csv", f"{_V2}/metaFiles2/meta_{{domain}}.json.gz"),
            "reviews": (f"{_V2}/categoryFilesSmall/{{domain}}_5.json.gz", f"{_V2}/metaFiles2/meta_{{domain}}.json.gz"),
        },
        domains=AMAZON2018_DOMAINS,
    ),
    "amazon2014": Source(
        host="https://snap.stanford.edu",
        layouts={
            "reviews": (
                "/data/amazon/productGraph/categoryFiles/reviews_{domain}_5.json.gz",
                "/data/amazon/productGraph/categoryFiles/meta_{domain}.json.gz",
            ),
        },
        domains=AMAZON2014_DOMAINS,
    ),
    "amazon2023": Source(
        host="https://mcauleylab.ucsd.edu",
        layouts={
            "reviews": (
                "/public_datasets/data/amazon_2023/raw/review_categories/{domain}.jsonl.gz",
                "/public_datasets/data/amazon_2023/raw/meta_categories/meta_{domain}.jsonl.gz",
            ),
        },
        domains=AMAZON2023_DOMAINS,
    ),
    "movielens": Source(
        host="https://files.grouplens.org",
        layouts={"archive": ("/datasets/movielens/{domain}.zip",)},
        domains=MOVIELENS_VARIANTS,
        md5=True,
        extract=True,
    ),
}

CHUNK = 1 << 20
TIMEOUT_S = 60  # per socket operation, not per file
USER_AGENT = "recplat-data-download/0.1 (python urllib)"


@dataclass(frozen=True)
class RemoteFile:
    url: str
    name: str  # the local file name
    checksum_url: str | None  # the publisher's md5 file, when there is one


def remote_files(source: str, domains: list[str], base_url: str | None = None, ratings: str | None = None) -> list[RemoteFile]:
    """The files to fetch, in domain order; ConfigError names a wrong source, domain or ratings."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    spec = SOURCES[source]
    what = "variants" if source == "movielens" else "domains"
    if not domains:
        raise ConfigError(f"{source}: give --domains, one or more of: {', '.join(spec.domains)}")
    unknown = [d for d in domains if d not in spec.domains]
    if unknown:
        raise ConfigError(
            f"{source}: unknown {what} {', '.join(map(repr, unknown))} (names are the publisher's, "
            f"case-sensitive); valid {what}: {', '.join(spec.domains)}"
        )
    layout = ratings or next(iter(spec.layouts))
    if layout not in spec.layouts:
        raise ConfigError(f"{source}: --ratings {layout!r} is not published; choose from {', '.join(spec.layouts)}")
    host = (base_url or spec.host).rstrip("/")
    files = []
    for domain in dict.fromkeys(domains):  # a domain given twice is fetched once
        for path in spec.layouts[layout]:
            url = host + path.format(domain=domain)
            files.append(RemoteFile(url, url.rsplit("/", 1)[1], url + ".md5" if spec.md5 else None))
    return files


def download(
    source: str,
    domains: list[str],
    dest: str | Path,
    base_url: str | None = None,
    ratings: str | None = None,
    show_progress: bool = True,
) -> list[Path]:
    """Fetch `source`'s files for `domains` into `dest`; the paths a prepare config points at
    (the files; for MovieLens the extracted `dest/<variant>` directories)."""
    files = remote_files(source, domains, base_url, ratings)  # validate everything before any transfer
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for remote in files:
        target = dest / remote.name
        fetched = fetch(remote.url, target, remote.checksum_url, show_progress)
        if SOURCES[source].extract:
            out.append(extract_movielens(target, dest, remote.name.removesuffix(".zip"), fresh=fetched))
        else:
            out.append(target)
    return out


# --- one file ------------------------------------------------------------------------------------
def fetch(url: str, target: Path, checksum_url: str | None = None, show_progress: bool = True) -> bool:
    """Download `url` to `target` through `target.part`; False when `target` was already complete."""
    if target.is_file() and _already_complete(url, target):
        return False
    expected_md5 = _published_md5(checksum_url) if checksum_url else None
    part = target.with_name(target.name + ".part")
    total = _transfer(url, part, show_progress)
    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(
            f"{url}: received {size} of {total} bytes (the connection ended early); "
            f"{part} is kept, so re-running the same command resumes"
        )
    if expected_md5 is not None:
        actual = file_md5(part)
        if actual != expected_md5:
            part.unlink()
            raise DataError(
                f"{url}: checksum mismatch: md5 of the download is {actual}, the publisher's "
                f"{checksum_url} says {expected_md5}; the download was deleted"
            )
    os.replace(part, target)
    return True


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def _network_error(url: str, exc: BaseException, part: Path | None = None) -> RecplatError:
    reason = getattr(exc, "reason", None) or exc
    kept = ""
    if part is not None and part.is_file() and part.stat().st_size:
        kept = f"; {part} ({part.stat().st_size} bytes) is kept, so re-running the same command resumes"
    return RecplatError(f"{url}: download failed ({type(reason).__name__}: {reason}){kept}")


def _http_error(url: str, exc: urllib.error.HTTPError) -> RecplatError:
    hint = " (the publisher may have moved it; --base-url can point at a mirror)" if exc.code == 404 else ""
    return RecplatError(f"{url}: HTTP {exc.code} {exc.reason}{hint}")


def _already_complete(url: str, target: Path) -> bool:
    """A final name is only ever written after verification, so it is complete unless the server
    now announces another size (a republished file, or a file put there by hand)."""
    try:
        with _request(url, "HEAD") as response:
            length = _content_length(response)
    except urllib.error.HTTPError:
        return True  # no HEAD here (405, 403): nothing to compare against
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc) from None
    return length is None or length == target.stat().st_size


def _published_md5(url: str) -> str | None:
    """The hex digest in a checksum file ("MD5 (f.zip) = <hex>" or "<hex>  f.zip"); None, with a
    warning, when the file is not there (a mirror without checksums)."""
    try:
        with _request(url) as response:
            text = response.read(1 << 16).decode("ascii", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            print(f"recplat: warning: no checksum at {url} (HTTP 404); checking the size only", file=sys.stderr)
            return None
        raise _http_error(url, exc) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc) from None
    match = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    if match is None:
        raise DataError(f"{url}: no MD5 digest in the checksum file (it reads {text[:80]!r})")
    return match.group(0).lower()


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.strip().isdigit() else None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of "bytes <first>-<last>/<total>" or "bytes */<total>"; None when absent."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if match is None:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _transfer(url: str, part: Path, show_progress: bool) -> int | None:
    """Bring `part` up to the whole file; the size the server announced for it (None if none)."""
    have = part.stat().st_size if part.is_file() else 0
    try:
        response = _request(url, headers={"Range": f"bytes={have}-"} if have else None)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after byte `have`: complete already, or longer than the file
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == have:
                return total
            part.unlink()
            return _transfer(url, part, show_progress)
        raise _http_error(url, exc) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc, part) from None

    with response:
        length = _content_length(response)
        if response.status == 206:
            offset, total = _content_range(response.headers.get("Content-Range"))
            if offset is None or offset > have:
                raise DataError(
                    f"{url}: the server answered a resume request with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; delete {part} to start over"
                )
            if total is None and length is not None:
                total = offset + length
        else:  # 200: the server ignored the Range header and sends the whole file
            offset, total = 0, length
        from tqdm import tqdm

        bar = tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
            file=sys.stderr, disable=not (show_progress and sys.stderr.isatty()),
        )
        with bar, open(part, "r+b" if part.exists() else "wb") as fh:
            fh.seek(offset)
            fh.truncate()
            try:
                while chunk := response.read(CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                fh.flush()
                raise _network_error(url, exc, part) from None
    return total


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


# --- MovieLens archives --------------------------------------------------------------------------
def _unsafe_member(name: str) -> bool:
    """An absolute path, a drive, or a ".." step: it would land outside the target directory."""
    posix = name.replace("\\", "/")
    return posix.startswith("/") or bool(re.match(r"[A-Za-z]:", posix)) or ".." in PurePosixPath(posix).parts


def extract_zip(archive: Path, dest: Path) -> None:
    """Extract `archive` into `dest`; every member is checked before anything is written, and the
    tree appears in `dest` only once fully extracted (top-level entries replace their namesakes)."""
    with zipfile.ZipFile(archive) as zf:
        bad = [name for name in zf.namelist() if _unsafe_member(name)]
        if bad:
            raise DataError(f"{archive}: refusing to extract members outside the target directory: {', '.join(bad)}")
        tmp = dest / f".{archive.name}.extract-{uuid.uuid4().hex[:8]}"
        try:
            zf.extractall(tmp)
            for entry in tmp.iterdir():
                final = dest / entry.name
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)
                elif final.exists() or final.is_symlink():
                    final.unlink()
                os.replace(entry, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def extract_movielens(archive: Path, dest: Path, variant: str, fresh: bool) -> Path:
    """`dest/<variant>`, extracted from `archive` unless it is already there and the archive was
    not just fetched; DataError when it lacks the files the movielens reader opens."""
    from recplat.data.sources.movielens import FILES

    folder = dest / variant
    expected = [folder / name for name in FILES[variant]]
    if fresh or not all(p.is_file() for p in expected):
        extract_zip(archive, dest)
    missing = [str(p) for p in expected if not p.is_file()]
    if missing:
        raise DataError(f"{archive}: extracted, but {', '.join(missing)} not found (the movielens reader needs them)")
    return folder
