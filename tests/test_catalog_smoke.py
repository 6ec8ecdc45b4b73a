"""Every ready catalog entry's smoke profile, end to end (issue 4): `recplat run NAME --profile smoke`
(every variant of its sweep) and `recplat report NAME --profile smoke`, on synthetic data, an
offline model and CPU workers.

One runs root per session, laid out as `recplat run` lays out its default folders
(`<root>/llmrec-table4_bert-smoke`), so a job that reads another job's run (`init_from`,
`eval.compare_with`, `requires`) finds it next to its own. Entries are parametrized in dependency
order; a test run alone (`-k fig5`) runs its requirements first.

Marked `catalog_smoke` (and slow): the 17 LLM-Rec entries took 50 min together on the shared 2-core
machine (40 s to 11 min each), so the default run leaves them out (pyproject addopts);
`pytest -m catalog_smoke` runs them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from recplat.catalog import Catalog, JobSpec
from recplat.run import RUN_FILE, default_out, run_subdir

PROFILE = "smoke"
pytestmark = [pytest.mark.slow, pytest.mark.catalog_smoke]


def _referenced_jobs(spec: JobSpec) -> list[str]:
    """The jobs whose smoke runs this entry reads: `requires`, and every `{job: ...}` reference in
    its smoke recipe sections (init_from, eval.compare_with, ...; any variant)."""
    found = list(spec.requires)

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("job"), str):
                found.append(node["job"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for variant in [v.name for v in spec.profile(PROFILE).variants()] or [None]:
        walk(spec.resolve(PROFILE, variant).recipe)
    return list(dict.fromkeys(found))


def _dependency_order(catalog: Catalog) -> list[JobSpec]:
    """Ready entries, every one after the entries it reads (depth-first, catalog order otherwise)."""
    ready = {spec.name: spec for spec in catalog if spec.ready}
    ordered: dict[str, JobSpec] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered or name not in ready:
            return
        if name in path:
            raise AssertionError(f"catalog: requirement cycle {' -> '.join((*path, name))}")
        for other in _referenced_jobs(ready[name]):
            visit(other, (*path, name))
        ordered[name] = ready[name]

    for name in ready:
        visit(name, ())
    return list(ordered.values())


CATALOG = Catalog()
ENTRIES = _dependency_order(CATALOG)


@pytest.fixture(scope="session")
def smoke_runs(ray_local, tmp_path_factory):
    """The session's runs root and a `run(name)` that runs a job's smoke profile there once
    (its requirements first); a failed job's error is re-raised to the jobs that need it."""
    root = tmp_path_factory.mktemp("catalog_smoke")
    done: dict[str, dict | BaseException] = {}

    def run(name: str) -> dict:
        from recplat.run import run_job

        if name not in done:
            spec = CATALOG.get(name)
            for other in _referenced_jobs(spec):
                run(other)
            try:
                done[name] = run_job(name, PROFILE, out=root / default_out(spec, PROFILE, None).name, catalog=CATALOG)
            except Exception as exc:  # noqa: BLE001 - kept for the jobs that need this one
                done[name] = exc
                raise
        if isinstance(done[name], BaseException):
            raise RuntimeError(f"{name}: its smoke run failed earlier in this session") from done[name]
        return done[name]

    return root, run


def _finite_fraction(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0


# per entry: xcross/table3_data_limited's smoke grid is 8 fits of 30 steps, ~40 min on the 2-core
# machine (an X-Cross fit ~7 min, a target-LoRA fit ~3 min, measured); fig4_layers and table2 hit
# 1200 s beside a CI run
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("spec", ENTRIES, ids=[spec.name for spec in ENTRIES])
def test_smoke_profile_runs_and_reports(spec: JobSpec, smoke_runs, capsys):
    from recplat.cli import main

    root, run = smoke_runs
    for other in _referenced_jobs(spec):  # normally done by the entries before this one
        run(other)
    started = time.monotonic()
    record = run(spec.name)
    seconds = time.monotonic() - started
    out = root / default_out(spec, PROFILE, None).name

    # run.json: complete, one run per variant of the smoke sweep (or the single run)
    on_disk = json.loads((out / RUN_FILE).read_text())
    assert on_disk["runs"].keys() == record["runs"].keys()
    variants = [v.name for v in spec.profile(PROFILE).variants()]
    assert (on_disk["job"], on_disk["profile"], on_disk["complete"]) == (spec.name, PROFILE, True)
    assert on_disk["variants"] == variants
    assert sorted(on_disk["runs"]) == sorted(run_subdir(v) for v in variants or [None])
    tests_something = False
    for sub, entry in on_disk["runs"].items():
        summary = entry["summary"]
        if summary.get("test_examples") is None:  # a training stage without a test split (CPRec cpt, MoLoRec general)
            assert summary["train"]["step"] > 0 and not summary.get("overall"), sub
            continue
        tests_something = True
        metrics = list(summary["overall"])  # the recipe's metrics (configured under eval, or sft.eval for CPRec)
        configured = (entry["config"].get("eval") or {}).get("metrics")
        assert metrics and (configured is None or set(metrics) == set(configured)), (sub, metrics, configured)
        assert all(_finite_fraction(summary["overall"][m]) for m in metrics), (sub, summary["overall"])
        assert summary["test_examples"] > 0, sub
        table = json.loads((out / sub / "test" / "metrics.json").read_text())
        for row in table["rows"]:
            assert row["n"] > 0 and all(_finite_fraction(row[m]) for m in metrics), (sub, row)
        assert (out / sub / "test" / "ranks.parquet").is_file(), sub

    # `recplat report`: the Markdown table and the figures (bars; a sweep also gets sweep.png)
    capsys.readouterr()
    assert main(["report", spec.name, "--profile", PROFILE, "--out", str(out)]) == 0
    assert "| metric |" in capsys.readouterr().out
    report = out / "report"
    readme = (report / "README.md").read_text()
    assert readme.startswith(f"# {spec.name}: {spec.ref}")
    pngs = sorted(p.name for p in report.glob("*.png"))
    expected = ["bars.png", "sweep.png"] if len(variants) > 1 else ["bars.png"]
    if not tests_something:  # nothing tested, nothing to plot: the report lists the runs
        expected = []
    if spec.name == "xcross/table3_data_limited":  # and Fig. 3: Hit@1 by training-set size, per target domain
        expected.append("data_limited_Books.png")
    if any(n.metric.endswith("_mb") for n in spec.paper_numbers):  # memory rows (CPRec Table 7) in MB
        expected.append("memory.png")
    assert pngs == sorted(expected)
    for name in pngs:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in readme
    print(f"\n[catalog smoke] {spec.name}: {len(variants) or 1} run(s) in {seconds:.0f} s")
