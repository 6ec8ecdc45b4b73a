"""`recplat submit`: the runtime_env, fast clear failures, and (slow) a real local Ray job server."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from recplat.cli import main
from recplat.runtime import free_loopback_port, free_loopback_ports
from recplat.submit import (
    EXCLUDES,
    PLAIN_HTTP_OPT_IN,
    SubmitError,
    build_runtime_env,
    connect,
    follow_job,
    job_entrypoint,
    normalise_address,
    project_root,
    submit_entrypoint,
    upload_listing,
)
from tests.test_run import check_smoke_run

ROOT = Path(__file__).resolve().parents[1]


def test_runtime_env_uploads_the_checkout_without_heavy_paths():
    env = build_runtime_env()
    assert Path(env["working_dir"]) == ROOT == project_root()
    for path in (".git", ".venv", "/data", "checkpoints", "outputs"):
        assert path in env["excludes"]
    assert env["env_vars"]["PYTHONPATH"] == "platform"
    assert "pip" not in env  # the cluster image's environment by default
    pinned = build_runtime_env(pip=True)["pip"]["packages"]
    assert "ray[default,train,tune,data]==2.60.0" in pinned and all("==" in p or ">=" in p for p in pinned)
    assert env["excludes"] == EXCLUDES


def test_excludes_keep_the_package_and_drop_the_heavy_paths():
    """Ray's own matcher (gitignore syntax): a bare "data" would also drop platform/recplat/data."""
    from ray._private.runtime_env.packaging import _get_excludes

    excluded = _get_excludes(ROOT, EXCLUDES)
    for kept in ("platform/recplat/data/config.py", "platform/recplat/catalog.py", "jobs/llmrec", "tests/data"):
        assert not excluded(ROOT / kept), kept
    for dropped in ("data", ".git", ".venv", "runs", "checkpoints", "outputs", "platform/recplat/__pycache__"):
        assert excluded(ROOT / dropped), dropped


def test_runtime_env_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    with pytest.raises(SubmitError, match="not a recplat checkout"):
        build_runtime_env(tmp_path)


def test_address_normalisation(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    assert normalise_address("127.0.0.1:8265/") == "http://127.0.0.1:8265"
    with pytest.raises(SubmitError, match="no cluster address"):
        normalise_address(None)
    with pytest.raises(SubmitError, match="http"):
        normalise_address("ray://head:10001")


def test_unreachable_address_fails_fast_and_clearly():
    address = f"http://127.0.0.1:{free_loopback_port()}"
    start = time.monotonic()
    with pytest.raises(SubmitError, match=f"cannot reach the Ray job server at {address}"):
        submit_entrypoint("echo hi", address, connect_timeout=2)
    assert time.monotonic() - start < 15  # not the OS connect timeout (minutes); slack for a loaded machine


def test_cli_submit_unreachable_and_planned(planned_catalog, capsys):
    port = free_loopback_port()
    assert main(["submit", "llmrec/table4_bert", "--profile", "smoke", "--address", f"127.0.0.1:{port}"]) == 2
    assert "cannot reach the Ray job server" in capsys.readouterr().err
    assert main(["submit", "cprec/table4_zero_shot", "--address", f"127.0.0.1:{port}"]) == 2
    assert "is planned" in capsys.readouterr().err
    assert main(["submit", "llmrec/table4_bert", "recipe.train.lr=1e-4", "--profile", "smokee", "--dry-run"]) == 2
    assert "did you mean smoke" in capsys.readouterr().err


def test_cli_submit_dry_run(capsys):
    code = main(["submit", "llmrec/table5_opt_fpft", "recipe.train.lr=1e-4", "--variant", "1.3b", "--dry-run"])
    assert code == 0
    captured = capsys.readouterr()
    assert ("entrypoint: recplat run llmrec/table5_opt_fpft --profile paper --variant 1.3b "
            "--out '~/recplat-runs/llmrec-table5_opt_fpft-paper-1.3b' recipe.train.lr=1e-4") in captured.out
    assert "- .git" in captured.out and "working_dir: " in captured.out
    # what is uploaded, counted by Ray's own packager walk
    line = next(x for x in captured.err.splitlines() if "uploading" in x)
    files = upload_listing(build_runtime_env())
    assert f": {len(files)} files, {sum(size for _, size in files) / 2**20:.1f} MiB" in line
    assert 100 < len(files) < 5000 and any(name == "platform/recplat/submit.py" for name, _ in files)


SECRETS = [".env", ".env.production", ".ray/auth_token", "credentials.json", "secrets/db_password.txt",
           "cluster/deploy.pem", "tls.key", "id_rsa", "id_rsa.pub", "keys/id_ed25519", ".aws/credentials",
           ".netrc", "platform/.env"]


def test_secrets_are_never_uploaded_even_untracked(tmp_path):
    """Ray's real packager (the zip it uploads), on a checkout holding untracked secrets."""
    from zipfile import ZipFile

    from ray._private.runtime_env.packaging import create_package

    (tmp_path / "platform" / "recplat").mkdir(parents=True)
    (tmp_path / "platform" / "recplat" / "__init__.py").write_text("")
    (tmp_path / "train.py").write_text("print('hi')")
    for name in SECRETS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("s3cr3t")
    env = build_runtime_env(tmp_path)
    zipped = tmp_path.parent / f"{tmp_path.name}.zip"
    create_package(env["working_dir"], zipped, include_gitignore=True, excludes=env["excludes"])
    with ZipFile(zipped) as archive:
        uploaded = sorted(n for n in archive.namelist() if not n.endswith("/"))
    assert uploaded == ["platform/recplat/__init__.py", "train.py"]
    assert [name for name, _ in upload_listing(env)] == uploaded  # what `recplat submit` prints


def test_a_token_never_goes_over_plain_http_to_a_remote_host(monkeypatch, capsys):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0ken")
    monkeypatch.delenv(PLAIN_HTTP_OPT_IN, raising=False)
    remote = "http://192.0.2.10:8265"  # TEST-NET-1: never routed
    with pytest.raises(SubmitError, match="refusing to send the Ray auth token over plain HTTP"):
        connect(remote, timeout=0.5)
    for fine in ("https://192.0.2.10:8265", f"http://127.0.0.1:{free_loopback_port()}", "http://localhost:1"):
        with pytest.raises(SubmitError, match="cannot reach"):  # allowed through to the connection attempt
            connect(fine, timeout=0.5)
    assert main(["submit", "llmrec/table4_bert", "--profile", "smoke", "--address", remote]) == 2
    assert "refusing to send the Ray auth token over plain HTTP to a remote host" in capsys.readouterr().err
    # opted in: a warning, then the connection attempt
    assert main(["submit", "llmrec/table4_bert", "--profile", "smoke", "--address", remote,
                 "--allow-plain-http"]) == 2
    err = capsys.readouterr().err
    assert "warning: sending the Ray auth token over plain HTTP to 192.0.2.10" in err and "cannot reach" in err
    monkeypatch.delenv(PLAIN_HTTP_OPT_IN)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(SubmitError, match="cannot reach"):  # no token: nothing to protect
        connect(remote, timeout=0.5)


def test_results_go_to_an_explicit_storage_root_on_the_head(tmp_path, monkeypatch):
    entry, out = job_entrypoint("llmrec/table4_bert", "paper", None, ["a.b=1"], "~/recplat-runs")
    assert out == "~/recplat-runs/llmrec-table4_bert-paper"
    assert entry == "recplat run llmrec/table4_bert --profile paper --out '~/recplat-runs/llmrec-table4_bert-paper' a.b=1"
    # `recplat run` puts `~` at the head's home (not the job's working directory, Ray's package cache)
    from recplat.run import plan_job

    monkeypatch.setenv("HOME", str(tmp_path))
    assert plan_job("llmrec/table4_bert", "smoke", out=out).out == tmp_path / "recplat-runs/llmrec-table4_bert-paper"
    entry, out = job_entrypoint("llmrec/table4_bert", "smoke", None, [], "/mnt/shared runs/")
    assert out == "/mnt/shared runs/llmrec-table4_bert-smoke" and "--out '/mnt/shared runs/llmrec-table4_bert-smoke'" in entry
    with pytest.raises(SubmitError, match="folder on the head node"):
        job_entrypoint("llmrec/table4_bert", "paper", None, [], "s3://bucket/runs")


# --- end to end: a local head node with token authentication --------------------------------------
@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head --block` on loopback with free ports; stopped by signalling the process
    group it started (not `ray stop`, which would stop every Ray of this user on the machine)."""
    token = secrets.token_hex(16)
    names = ("port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port",
             "node-manager-port", "object-manager-port")  # fmt: skip
    ports = dict(zip(names, free_loopback_ports(len(names))))
    temp_dir = tempfile.mkdtemp(prefix="rpe2e", dir="/tmp")  # short: unix socket paths are limited
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token, PATH=bin_dir + os.pathsep + env.get("PATH", ""),
    )  # fmt: skip
    cmd = [f"{bin_dir}/ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           "--dashboard-host=127.0.0.1", "--num-cpus=4", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    cmd += [f"--{name}={port}" for name, port in ports.items()]
    log = open(Path(temp_dir) / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)  # this process is a client too
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {(Path(temp_dir) / 'ray-start.log').read_text()[-3000:]}")
            try:
                connect(address).list_jobs()  # the client recplat submit uses (token header)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        yield {"address": address, "env": env}
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        with contextlib.suppress(ProcessLookupError):  # gone already when `ray start` failed
            os.killpg(proc.pid, signal.SIGTERM)
            try:  # a graceful stop took 35 s; nothing of this throw-away cluster needs one
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        _kill_leftovers(temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _kill_leftovers(temp_dir: str) -> None:
    """Processes of this test's cluster that left the process group (their command line names its
    unique temp dir), ended by pid."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline:
            try:
                os.kill(int(proc_dir.name), signal.SIGKILL)
            except OSError:
                pass


# the cheapest ready smoke job (SASRec), a few steps
SMOKE_JOB = ("llmrec/table4_sasrec", "smoke")
STEPS = ["recipe.train.max_steps=4", "recipe.train.eval_every=2"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_submit_to_a_local_cluster_end_to_end(ray_head, tmp_path, capsys, monkeypatch):
    """The helpers behind `recplat submit`: the uploaded checkout runs the job, and the results
    land under the storage root, not in the job's working directory (Ray's package cache). The
    job is `recplat run` on the head, so its results are checked as test_run checks a CLI run's."""
    address = ray_head["address"]
    entrypoint, _ = job_entrypoint(*SMOKE_JOB, None, STEPS, str(tmp_path / "root"), mlflow=True)
    assert " --mlflow " in entrypoint
    job_id = submit_entrypoint(
        entrypoint, address,
        runtime_env=build_runtime_env(), submission_id=f"recplat-e2e-{secrets.token_hex(3)}",
    )  # fmt: skip
    status = follow_job(address, job_id, out=open(os.devnull, "w"), timeout=300)
    assert status == "SUCCEEDED", connect(address).get_job_logs(job_id)[-3000:]
    out = tmp_path / "root" / "llmrec-table4_sasrec-smoke"
    check_smoke_run(out, STEPS, capsys)
    # --mlflow: the run in a file store beside it, with the test metrics of run.json
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when allowed
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name(f"{SMOKE_JOB[0]} ({SMOKE_JOB[1]})").experiment_id])
    overall = json.loads((out / "run.json").read_text())["runs"]["run"]["summary"]["overall"]
    assert run.data.metrics["test/recall_at_1"] == overall["recall@1"] and run.data.params["arch"] == "sasrec" and run.data.params["train.max_steps"] == "4"


@pytest.mark.heavy  # a second 100 s job; the path it adds is the shipped cluster/runtime_env.yaml
@pytest.mark.timeout(600)
def test_plain_ray_job_submit_with_the_shipped_runtime_env(ray_head, tmp_path, capsys):
    """The plain Ray CLI with cluster/runtime_env.yaml, from the repository root."""
    address, out = ray_head["address"], tmp_path / "out_cli"
    cli_id = f"recplat-e2e-cli-{secrets.token_hex(3)}"
    cli = subprocess.run(
        [f"{Path(sys.executable).parent}/ray", "job", "submit", "--address", address, "--submission-id", cli_id,
         "--runtime-env", "cluster/runtime_env.yaml", "--", "recplat", "run", SMOKE_JOB[0], "--profile", SMOKE_JOB[1],
         "--out", str(out), *STEPS],
        cwd=ROOT, env=ray_head["env"], capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    assert str(connect(address).get_job_status(cli_id).value) == "SUCCEEDED"
    check_smoke_run(out, STEPS, capsys)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_failed_job_exits_non_zero_with_a_message(ray_head, capsys):
    address = ray_head["address"]
    job_id = submit_entrypoint("python -c 'import sys; sys.exit(3)'", address)
    assert follow_job(address, job_id, timeout=240) == "FAILED"
    from recplat.submit import job_failure_message

    text = job_failure_message(address, job_id, "FAILED")
    assert job_id in text and "ray job logs" in text
