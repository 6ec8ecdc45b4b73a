"""recplat.data.download against a loopback HTTP server with Range support (no internet, no Ray)."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recplat import cli
from recplat.data import download as dl
from recplat.data.config import Amazon2014Source, Amazon2018Source, Amazon2023Source, MovieLensSource
from recplat.data.sources import amazon2014, amazon2018, amazon2023, movielens
from recplat.errors import ConfigError, DataError, RecplatError
from recplat.runtime import free_loopback_port  # nothing listens there

ML100K_PATH = "/datasets/movielens/ml-100k.zip"


# --- the loopback server -------------------------------------------------------------------------
@dataclass
class Served:
    root: Path
    url: str = ""
    ignore_range: bool = False  # answer every GET with 200 and the whole file
    extra_length: int = 0  # announce this many bytes more than are sent, then close
    requests: list[tuple[str, str, dict]] = field(default_factory=list)  # (method, path, headers)

    def put(self, path: str, data: bytes) -> bytes:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return data

    def seen(self, method: str, path: str) -> list[dict]:
        return [headers for m, p, headers in self.requests if m == method and p == path]


class RangeHandler(BaseHTTPRequestHandler):
    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        state: Served = self.server.state
        state.requests.append((self.command, self.path, dict(self.headers)))
        path = state.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if wanted and not state.ignore_range and self.command == "GET":
            start = int(wanted.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start + state.extra_length))
        self.end_headers()
        if body:
            self.wfile.write(data[start:])  # HTTP/1.0: the connection closes after this

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = Served(tmp_path / "www", url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state.root.mkdir()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()


# --- fixture files in the publishers' formats ----------------------------------------------------
def ml100k_zip(extra: dict[str, bytes] | None = None) -> bytes:
    """A tiny ml-100k archive laid out like GroupLens's (top-level ml-100k/ folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t4\t881250949\n2\t10\t3\t891717742\n" * 200)
        zf.writestr("ml-100k/u.item", "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1" + "|0" * 13 + "\n")
        zf.writestr("ml-100k/README", "tiny fixture\n")
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def publish_ml100k(served: Served, data: bytes | None = None, md5: str | None = None) -> bytes:
    data = served.put(ML100K_PATH, data if data is not None else ml100k_zip())
    served.put(ML100K_PATH + ".md5", f"MD5 (ml-100k.zip) = {md5 or hashlib.md5(data).hexdigest()}\n".encode())
    return data


def fetch_ml100k(served: Served, dest: Path) -> list[Path]:
    return dl.download("movielens", ["ml-100k"], dest, base_url=served.url, show_progress=False)


# --- the table of official URLs ------------------------------------------------------------------
def test_official_urls_and_local_names():
    urls = lambda *args, **kw: [(f.url, f.name, f.checksum_url) for f in dl.remote_files(*args, **kw)]  # noqa: E731
    v2 = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"
    assert urls("amazon2018", ["Prime_Pantry"]) == [
        (f"{v2}/categoryFilesSmall/Prime_Pantry.csv", "Prime_Pantry.csv", None),
        (f"{v2}/metaFiles2/meta_Prime_Pantry.json.gz", "meta_Prime_Pantry.json.gz", None),
    ]
    assert urls("amazon2018", ["Prime_Pantry"], ratings="reviews")[0][0] == f"{v2}/categoryFilesSmall/Prime_Pantry_5.json.gz"
    snap = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
    assert [u for u, _, _ in urls("amazon2014", ["Beauty"])] == [
        f"{snap}/reviews_Beauty_5.json.gz", f"{snap}/meta_Beauty.json.gz"
    ]
    raw = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw"
    assert [u for u, _, _ in urls("amazon2023", ["All_Beauty"])] == [
        f"{raw}/review_categories/All_Beauty.jsonl.gz", f"{raw}/meta_categories/meta_All_Beauty.jsonl.gz"
    ]
    ml = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert urls("movielens", ["ml-1m"]) == [(ml, "ml-1m.zip", ml + ".md5")]
    # --base-url replaces the host and keeps the layout
    assert urls("movielens", ["ml-1m"], base_url="http://mirror:8/gl/")[0][0] == "http://mirror:8/gl/datasets/movielens/ml-1m.zip"


@pytest.mark.parametrize(
    "source, domains, ratings, message",
    [
        ("amazon2019", ["Books"], None, "unknown source 'amazon2019'; valid sources: amazon2018, amazon2014, amazon2023, movielens"),
        ("amazon2018", ["Prime_Pantry", "Beauty"], None, "amazon2018: unknown domains 'Beauty'"),
        ("amazon2018", ["prime_pantry"], None, "valid domains: AMAZON_FASHION, All_Beauty"),
        ("movielens", ["ml-20m"], None, "valid variants: ml-100k, ml-1m, ml-latest-small, ml-latest"),
        ("movielens", [], None, "movielens: give --domains"),
        ("amazon2014", ["Beauty"], "csv", "amazon2014: --ratings 'csv' is not published; choose from reviews"),
    ],
)
def test_bad_arguments_are_named_before_any_transfer(tmp_path, source, domains, ratings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        unreachable = f"http://127.0.0.1:{free_loopback_port()}"
        dl.download(source, domains, tmp_path / "raw", ratings=ratings, base_url=unreachable)
    assert not (tmp_path / "raw").exists()


# --- transfers -----------------------------------------------------------------------------------
def test_full_download_verifies_md5_and_extracts(server, tmp_path):
    data = publish_ml100k(server)
    dest = tmp_path / "raw"
    assert fetch_ml100k(server, dest) == [dest / "ml-100k"]
    assert (dest / "ml-100k.zip").read_bytes() == data
    assert not (dest / "ml-100k.zip.part").exists()
    assert server.seen("GET", ML100K_PATH + ".md5")
    assert not server.seen("GET", ML100K_PATH)[0].get("Range")
    # the names the movielens reader opens
    tasks = movielens.plan(MovieLensSource(kind="movielens", path=str(dest / "ml-100k"), variant="ml-100k"))
    assert [Path(t.path).name for t in tasks] == ["u.data", "u.item"]
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no extraction leftovers


def test_resume_sends_range_and_appends(server, tmp_path):
    data = publish_ml100k(server)
    dest = tmp_path / "raw"
    dest.mkdir()
    half = len(data) // 2
    (dest / "ml-100k.zip.part").write_bytes(data[:half])
    fetch_ml100k(server, dest)
    assert [h.get("Range") for h in server.seen("GET", ML100K_PATH)] == [f"bytes={half}-"]
    assert (dest / "ml-100k.zip").read_bytes() == data
    assert not (dest / "ml-100k.zip.part").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = publish_ml100k(server)
    server.ignore_range = True
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "ml-100k.zip.part").write_bytes(b"stale bytes from another file" * 50)
    fetch_ml100k(server, dest)
    assert server.seen("GET", ML100K_PATH)[0]["Range"].startswith("bytes=")
    assert (dest / "ml-100k.zip").read_bytes() == data  # truncated and rewritten, md5 verified


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    data = publish_ml100k(server, md5="0" * 32)
    dest = tmp_path / "raw"
    message = f"{server.url}{ML100K_PATH}: checksum mismatch: md5 of the download is {hashlib.md5(data).hexdigest()}"
    with pytest.raises(DataError, match=re.escape(message) + ".*" + "0" * 32):
        fetch_ml100k(server, dest)
    assert sorted(p.name for p in dest.iterdir()) == []


def test_short_transfer_keeps_part_and_rerun_completes(server, tmp_path):
    data = publish_ml100k(server)
    server.extra_length = 1000  # Content-Length says 1000 bytes more; the server closes early
    dest = tmp_path / "raw"
    with pytest.raises(DataError, match=rf"received {len(data)} of {len(data) + 1000} bytes.*\.part is kept"):
        fetch_ml100k(server, dest)
    assert (dest / "ml-100k.zip.part").read_bytes() == data
    assert not (dest / "ml-100k.zip").exists()
    server.extra_length = 0
    fetch_ml100k(server, dest)  # asks for bytes=len(data)-, gets 416 with the total: complete
    assert server.seen("GET", ML100K_PATH)[-1]["Range"] == f"bytes={len(data)}-"
    assert (dest / "ml-100k.zip").read_bytes() == data


def test_complete_file_is_skipped_without_get(server, tmp_path):
    publish_ml100k(server)
    dest = tmp_path / "raw"
    fetch_ml100k(server, dest)
    server.requests.clear()
    assert fetch_ml100k(server, dest) == [dest / "ml-100k"]
    assert [(m, p) for m, p, _ in server.requests] == [("HEAD", ML100K_PATH)]


def test_final_file_of_another_size_is_fetched_again(server, tmp_path):
    data = publish_ml100k(server)
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "ml-100k.zip").write_bytes(b"an older release")
    fetch_ml100k(server, dest)
    assert (dest / "ml-100k.zip").read_bytes() == data


def test_unreachable_host_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{free_loopback_port()}"
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "Prime_Pantry.csv.part").write_bytes(b"a,b,5.0,1\n")
    with pytest.raises(RecplatError, match=re.escape(f"{url}/mcauley_group/data/amazon_v2/categoryFilesSmall/Prime_Pantry.csv: download failed (ConnectionRefusedError")) as info:
        dl.download("amazon2018", ["Prime_Pantry"], dest, base_url=url, show_progress=False)
    assert "is kept, so re-running the same command resumes" in str(info.value)
    assert (dest / "Prime_Pantry.csv.part").read_bytes() == b"a,b,5.0,1\n"


def test_missing_file_names_the_url(server, tmp_path):
    with pytest.raises(RecplatError, match=r"/categoryFilesSmall/Prime_Pantry\.csv: HTTP 404"):
        dl.download("amazon2018", ["Prime_Pantry"], tmp_path, base_url=server.url, show_progress=False)


def test_malicious_zip_member_is_rejected(server, tmp_path):
    publish_ml100k(server, ml100k_zip({"../evil": b"owned", "/abs/evil": b"owned"}))
    dest = tmp_path / "raw"
    with pytest.raises(DataError, match=r"refusing to extract members outside the target directory: \.\./evil, /abs/evil"):
        fetch_ml100k(server, dest)
    assert not (tmp_path / "evil").exists() and not Path("/abs/evil").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["ml-100k.zip"]  # nothing extracted, not even u.data


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/x", "C:/x", "..\\x", "a\\..\\..\\x"])
def test_unsafe_member_names(name):
    assert dl._unsafe_member(name)
    assert not dl._unsafe_member("ml-1m/ratings.dat")


@pytest.mark.parametrize(
    "source, ratings, reader, config",
    [
        ("amazon2018", "csv", amazon2018, Amazon2018Source),
        ("amazon2018", "reviews", amazon2018, Amazon2018Source),
        ("amazon2014", None, amazon2014, Amazon2014Source),
        ("amazon2023", None, amazon2023, Amazon2023Source),
    ],
)
def test_amazon_names_are_the_readers(server, tmp_path, source, ratings, reader, config):
    domains = ["Office_Products", "Musical_Instruments"]
    for remote in dl.remote_files(source, domains, base_url=server.url, ratings=ratings):
        server.put(remote.url.removeprefix(server.url), gzip.compress(b"{}\n") if remote.name.endswith(".gz") else b"x\n")
    paths = dl.download(source, domains, tmp_path / "raw", base_url=server.url, ratings=ratings, show_progress=False)
    extra = {"ratings": ratings} if ratings else {}
    tasks = reader.plan(config(kind=source, path=str(tmp_path / "raw"), domains=domains, **extra))
    assert [Path(t.path) for t in tasks] == paths


def test_cli_end_to_end(server, tmp_path, capsys):
    publish_ml100k(server)
    dest = tmp_path / "raw" / "movielens"
    argv = ["data", "download", "movielens", "--domains", "ml-100k", "--to", str(dest), "--base-url", server.url]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [str(dest / "ml-100k")]
    assert (dest / "ml-100k" / "u.data").is_file()
    assert cli.main(argv[:4] + ["ml-20m"] + argv[5:]) == 2
    assert "unknown variants 'ml-20m'" in capsys.readouterr().err
