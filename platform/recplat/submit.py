"""Submit work to a Ray cluster's job server (`ray job submit` through JobSubmissionClient).

    job_id = submit_entrypoint("recplat run llmrec/table4_bert --profile paper",
                               address="http://127.0.0.1:8265")
    status = follow_job(address, job_id)          # streams the logs, returns the final status

The runtime_env uploads this checkout (the working_dir) without the paths Ray should never ship:
`.git`, virtual environments, data, checkpoints and outputs (Ray caps a working_dir upload at a few
hundred MB). The job imports the uploaded source (`PYTHONPATH=platform`); its dependencies come from
the cluster image (cluster/ setup commands install them) or, with `pip=True`, from the pinned
requirements of pyproject.toml. `cluster/runtime_env.yaml` is the same runtime_env for the plain
`ray job submit --runtime-env` command (a test keeps the two equal).

Ray 2.60 clusters use token authentication: the client needs RAY_AUTH_MODE=token and the cluster's
token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from recplat.errors import RecplatError

# Paths never uploaded with a job (gitignore syntax, relative to the working_dir). A leading "/"
# anchors a name to the checkout's top level: a bare "data" would also drop platform/recplat/data.
EXCLUDES = [
    ".git",
    ".venv",
    "venv",
    "/data",
    "checkpoints",
    "outputs",
    "/runs",
    "/out",
    "/build",
    "*.egg-info",
    "**/__pycache__",
    ".pytest_cache",
    ".torch_extensions",
]
ENV_VARS = {"PYTHONPATH": "platform", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
DEFAULT_CONNECT_TIMEOUT = 10.0


class SubmitError(RecplatError):
    """The job server could not be reached, refused the job, or the job did not succeed."""


def project_root() -> Path:
    """The checkout to upload: the folder holding pyproject.toml and platform/recplat."""
    return Path(__file__).resolve().parents[2]


def pinned_requirements(root: Path | None = None) -> list[str]:
    """pyproject.toml's dependencies (pinned there to the versions measured together)."""
    import tomllib

    data = tomllib.loads((Path(root or project_root()) / "pyproject.toml").read_text(encoding="utf-8"))
    return list(data["project"]["dependencies"])


def build_runtime_env(
    working_dir: str | Path | None = None,
    pip: bool = False,
    env_vars: dict[str, str] | None = None,
    excludes: list[str] | None = None,
) -> dict[str, Any]:
    """The job's runtime_env: this checkout minus EXCLUDES, PYTHONPATH on its source root."""
    root = Path(working_dir or project_root()).resolve()
    if not (root / "platform" / "recplat").is_dir():
        raise SubmitError(f"{root}: not a recplat checkout (no platform/recplat); run from the repository")
    env: dict[str, Any] = {
        "working_dir": str(root),
        "excludes": list(EXCLUDES if excludes is None else excludes),
        "env_vars": {**ENV_VARS, **(env_vars or {})},
    }
    if pip:
        env["pip"] = {"packages": pinned_requirements(root), "pip_check": False}
    return env


def normalise_address(address: str | None) -> str:
    """`--address`, else RAY_API_SERVER_ADDRESS / RAY_ADDRESS, as an http(s) URL of the job server."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise SubmitError(
            "no cluster address: pass --address http://HOST:8265 (the dashboard / job server; "
            "`ray dashboard cluster.yaml` forwards it to http://127.0.0.1:8265)"
        )
    if "://" not in address:
        address = "http://" + address
    if not address.startswith(("http://", "https://")):
        raise SubmitError(f"address {address!r}: give the job server's http(s) URL, e.g. http://127.0.0.1:8265")
    return address.rstrip("/")


def check_reachable(address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """Fail fast with a readable message when nothing listens at `address` (the Ray client would
    otherwise wait for the operating system's connect timeout, minutes for a dropped packet)."""
    url = urlparse(address)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise SubmitError(
            f"cannot reach the Ray job server at {address} ({exc.strerror or exc}). Is the cluster up, and "
            "is the dashboard port forwarded (`ray dashboard cluster/aws.yaml`, or `kubectl port-forward "
            "svc/<cluster>-head-svc 8265:8265`)?"
        ) from None


def connect(address: str | None, timeout: float = DEFAULT_CONNECT_TIMEOUT):
    """A JobSubmissionClient for `address`, or a SubmitError that says what to check."""
    from ray.job_submission import JobSubmissionClient

    address = normalise_address(address)
    check_reachable(address, timeout)
    # An explicit RAY_AUTH_TOKEN goes into the header ourselves: Ray's token loader is a per-process
    # singleton, so a process that already ran a local Ray would otherwise send that Ray's token.
    token = os.environ.get("RAY_AUTH_TOKEN")
    headers = {"authorization": f"Bearer {token.strip()}"} if token else None
    try:
        return JobSubmissionClient(address, headers=headers)
    except Exception as exc:  # ConnectionError, RuntimeError (auth, version) ...
        raise SubmitError(f"cannot use the Ray job server at {address}: {exc}{_auth_hint(exc)}") from None


def new_submission_id(label: str) -> str:
    """recplat-<label>-<utc time>-<random>: readable in `ray job list`, unique."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label).strip("-") or "job"
    return f"recplat-{safe}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def submit_entrypoint(
    entrypoint: str | list[str],
    address: str | None = None,
    *,
    runtime_env: dict[str, Any] | None = None,
    submission_id: str | None = None,
    metadata: dict[str, str] | None = None,
    entrypoint_num_cpus: float | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> str:
    """Submit a shell command as a Ray job; returns its submission id."""
    if isinstance(entrypoint, list):
        entrypoint = shlex.join(entrypoint)
    client = connect(address, connect_timeout)
    env = build_runtime_env() if runtime_env is None else runtime_env
    try:
        return client.submit_job(
            entrypoint=entrypoint,
            runtime_env=env,
            submission_id=submission_id,
            metadata=metadata,
            entrypoint_num_cpus=entrypoint_num_cpus,
        )
    except Exception as exc:
        raise SubmitError(f"the job server at {client.get_address()} refused the job: {exc}{_auth_hint(exc)}") from None


def follow_job(
    address: str | None,
    job_id: str,
    out: TextIO | None = None,
    timeout: float | None = None,
    poll_s: float = 1.0,
) -> str:
    """Stream a job's logs to `out` until it ends; returns its final status (SUCCEEDED, FAILED, STOPPED)."""
    out = out or sys.stdout
    client = connect(address)

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if timeout is None:
            asyncio.run(tail())
        else:
            asyncio.run(asyncio.wait_for(tail(), timeout))
    except asyncio.TimeoutError:
        raise SubmitError(f"job {job_id} did not finish within {timeout:.0f} s; it keeps running") from None
    except Exception as exc:  # the log stream broke: fall back to polling the status
        out.write(f"recplat: log stream ended ({exc}); waiting for the job's status\n")
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise SubmitError(f"job {job_id} did not finish within {timeout:.0f} s; it keeps running")
        time.sleep(poll_s)


def job_failure_message(address: str | None, job_id: str, status: str) -> str:
    """A one-paragraph reason for a job that did not succeed (Ray's own message when it has one)."""
    try:
        info = connect(address).get_job_info(job_id)
        reason = (info.message or "").strip()
    except RecplatError:
        reason = ""
    where = normalise_address(address)
    text = f"job {job_id} {status.lower()}"
    if reason:
        text += f": {reason}"
    return text + f"\n  logs: ray job logs {job_id} --address {where}"


def _auth_hint(exc: Exception) -> str:
    text = str(exc).lower()
    if "auth" in text or "401" in text or "403" in text or "token" in text:
        return (
            "\n  Ray 2.60 clusters use token authentication: export RAY_AUTH_MODE=token and the cluster's "
            "token (RAY_AUTH_TOKEN=..., or copy the head node's ~/.ray/auth_token)"
        )
    return ""
