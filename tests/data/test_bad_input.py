"""Bad input to `recplat prepare` is named where it is (issue #18 item 5): a bad override against
the command line, a last CSV line cut inside its timestamp as a counted reject (not a 1970
timestamp), and `--strict`'s one-line error without Ray worker tracebacks after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import recplat.data
from recplat.config import load_config
from recplat.data.config import Amazon2018Source, PrepareConfig
from recplat.errors import ConfigError, DataError
from tests.data.sources.reading import read_tasks, rejects, rows

SPIAO = Path(recplat.data.__file__).parent / "defaults" / "spiao.yaml"
LINES = ["B00A,U1,5.0,1500000000", "B00B,U1,4.0,1500086400", "B00A,U2,3.0,1500172800"]


def test_bad_override_is_reported_against_the_command_line():
    with pytest.raises(ConfigError) as err:
        load_config(PrepareConfig, SPIAO, ["kcore.user=many"], relative_to_file=False)
    message = str(err.value)
    assert message.startswith("command line (kcore.user=many) over ") and "kcore.user" in message
    with pytest.raises(ConfigError, match="command line .*sequences.tie_ordr: unknown key"):
        load_config(PrepareConfig, SPIAO, ["sequences.tie_ordr=[item]"], relative_to_file=False)


def test_bad_file_is_still_reported_against_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPIAO.read_text().replace("seed: 42", "seed: forty-two"))
    with pytest.raises(ConfigError) as err:
        load_config(PrepareConfig, bad, ["kcore.user=3"])
    assert str(err.value).startswith(f"{bad}: seed:")


def amazon_csv(folder: Path, text: str) -> Amazon2018Source:
    folder.mkdir()
    (folder / "Office_Products.csv").write_text(text)
    (folder / "meta_Office_Products.json").write_text('{"asin": "B00A", "title": "A"}\n{"asin": "B00B", "title": "B"}\n')
    return Amazon2018Source(kind="amazon2018", path=str(folder), domains=["Office_Products"])


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "lines"])
def test_last_line_cut_inside_the_timestamp_is_a_counted_reject(tmp_path, fast):
    source = amazon_csv(tmp_path / "raw", "\n".join(LINES) + "\nB00B,U2,2.0,15001")  # cut mid-timestamp
    (_, result), _ = read_tasks(source, fast)
    assert rejects(result) == [("Office_Products.csv", 4, "truncated_last_line")]
    assert [r[3] for r in rows(result.interactions)] == [1500000000, 1500086400, 1500172800]
    with pytest.raises(DataError, match=r"Office_Products.csv:4: truncated_last_line"):
        read_tasks(source, fast, strict=True)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "lines"])
def test_last_line_without_newline_but_whole_is_kept(tmp_path, fast):
    (_, result), _ = read_tasks(amazon_csv(tmp_path / "raw", "\n".join(LINES)), fast)
    assert rejects(result) == [] and result.interactions.num_rows == 3


@pytest.mark.slow
@pytest.mark.parametrize("on_ray", [True, False], ids=["ray", "inline"])
def test_strict_error_is_one_line_without_worker_tracebacks(tmp_path, request, on_ray):
    """Several bad files read in parallel on Ray workers (the command joins the tests' Ray with
    --address: starting another costs 30 s here), or, asked for no Ray, in the command's own
    process (a small input): the first error is the whole of stderr's complaint."""
    ray_args = ["--address", request.getfixturevalue("ray_local").get_runtime_context().gcs_address] if on_ray else []
    folder = tmp_path / "raw"
    folder.mkdir()
    domains = ["Office_Products", "Prime_Pantry", "Arts_Crafts_and_Sewing"]
    for domain in domains:
        (folder / f"{domain}.csv").write_text("\n".join(LINES) + "\nB00A,U3,five,1500000000\n")
        (folder / f"meta_{domain}.json").write_text('{"asin": "B00A", "title": "A"}\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "recplat.cli", "prepare", "--preset", "spiao", "--strict", "--out", str(tmp_path / "ds"),
         *ray_args, f"sources.0.path={folder}", f"sources.0.domains=[{', '.join(domains)}]"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("recplat: error:") == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("recplat: error: ") and ".csv:4: bad_value:rating" in proc.stderr
    assert "Traceback" not in proc.stderr and "Unhandled error" not in proc.stderr, proc.stderr
    assert not (tmp_path / "ds").exists()
    assert ("Connected to Ray cluster" in proc.stderr) == on_ray, proc.stderr
    assert "Started a local Ray" not in proc.stderr
