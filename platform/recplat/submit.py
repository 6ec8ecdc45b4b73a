"""Submit work to a Ray cluster's job server (`ray job submit` through JobSubmissionClient).

    job_id = submit_entrypoint("recplat run llmrec/table4_bert --profile paper",
                               address="http://127.0.0.1:8265")
    status = follow_job(address, job_id)          # streams the logs, returns the final status

The runtime_env uploads this checkout (the working_dir) without the paths Ray should never ship:
`.git`, virtual environments, data, checkpoints and outputs (Ray caps a working_dir upload at a few
hundred MB), and secrets (`.env`, `.ray/auth_token`, credentials, keys), untracked or not;
`describe_upload` says what goes (files, MiB). The run writes into `--out <storage root>/<run name>` on
the head (`job_entrypoint`), never into the uploaded copy, which Ray deletes with its package cache.
A token goes over plain http:// only to loopback (a tunnel) unless the user opts in. The job imports the uploaded source (`PYTHONPATH=platform`); its dependencies come from
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
    # secrets, wherever they are: Ray's packager uploads every untracked file that is not excluded
    ".env",
    ".env.*",
    ".ray",
    ".aws",
    ".ssh",
    ".netrc",
    ".git-credentials",
    "credentials.json",
    "secrets",
    "*.pem",
    "*.key",
    "*.p12",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    "kubeconfig",
]
DEFAULT_STORAGE_ROOT = "~/recplat-runs"  # on the cluster's head node (the driver runs there)
PLAIN_HTTP_OPT_IN = "RECPLAT_ALLOW_PLAIN_HTTP"  # =1: send the token over http:// to a remote host anyway
ENV_VARS = {"PYTHONPATH": "platform", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
DEFAULT_CONNECT_TIMEOUT = 10.0
AGENT_WAIT_SECONDS = 60.0  # how long a just-started head may take to register its job agent


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


def upload_listing(runtime_env: dict[str, Any]) -> list[tuple[str, int]]:
    """(relative path, bytes) of every file Ray's packager will upload for `runtime_env`'s
    working_dir: its own walk, with the same excludes and .gitignore / .rayignore files."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    root = Path(runtime_env["working_dir"]).resolve()
    files: list[tuple[str, int]] = []

    def visit(path: Path) -> None:
        if path.is_file():
            files.append((path.relative_to(root).as_posix(), path.stat().st_size))

    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    _dir_travel(root, [_get_excludes(root, runtime_env.get("excludes", []))], visit, include_gitignore=include_gitignore)
    return sorted(files)


def describe_upload(runtime_env: dict[str, Any]) -> str:
    """One line: what the job uploads (files, size, the biggest file)."""
    files = upload_listing(runtime_env)
    total = sum(size for _, size in files)
    biggest = max(files, key=lambda f: f[1], default=("-", 0))
    return (f"uploading {runtime_env['working_dir']}: {len(files)} files, {total / 2**20:.1f} MiB "
            f"(largest {biggest[0]}, {biggest[1] / 2**10:.0f} KiB; excluded: {', '.join(runtime_env.get('excludes', []))})")


def job_entrypoint(name: str, profile: str, variant: str | None, overrides: list[str],
                   storage_root: str = DEFAULT_STORAGE_ROOT, mlflow: bool = False) -> tuple[str, str]:  # fmt: skip
    """The shell command of a catalog job's Ray job and its run folder on the cluster:
    `recplat run NAME --profile P [--variant V] --out ROOT/<run name> [--mlflow] [overrides]`. The run writes its
    data, checkpoints and run.json there, not in Ray's package cache (the job's working directory,
    which Ray deletes). `recplat run` expands a leading `~` to the head's home."""
    from recplat.catalog import Catalog
    from recplat.run import default_out

    if "://" in storage_root:
        raise SubmitError(f"--storage-root {storage_root}: give a folder on the head node (bucket roots are not "
                          "supported for the run folder; set recipe.train.storage_path for checkpoints)")
    out = f"{storage_root.rstrip('/')}/{default_out(Catalog().get(name), profile, variant).name}"
    command = ["recplat", "run", name, "--profile", profile] + (["--variant", variant] if variant else [])
    return shlex.join([*command, "--out", out, *(["--mlflow"] if mlflow else []), *overrides]), out


def check_transport(address: str, sends_token: bool) -> None:
    """A bearer token over plain http:// is readable by anyone on the path: refuse it unless the
    host is this machine (an SSH tunnel / port-forward ends on loopback) or the user opted in."""
    import ipaddress

    url = urlparse(address)
    if not sends_token or url.scheme != "http":
        return
    host = url.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return
    if os.environ.get(PLAIN_HTTP_OPT_IN) == "1":
        print(f"recplat: warning: sending the Ray auth token over plain HTTP to {host} ({PLAIN_HTTP_OPT_IN}=1)",
              file=sys.stderr)
        return
    raise SubmitError(
        f"address {address}: refusing to send the Ray auth token over plain HTTP to a remote host; use https://, "
        f"or a tunnel to loopback (`ray dashboard cluster/aws.yaml`, `kubectl port-forward`) and "
        f"http://127.0.0.1:8265, or pass --allow-plain-http ({PLAIN_HTTP_OPT_IN}=1) if the network is trusted"
    )


def sends_token() -> bool:
    """Whether a client here sends a token: ours (RAY_AUTH_TOKEN) or Ray's own (RAY_AUTH_MODE=token)."""
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


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
    check_transport(address, sends_token())
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
    deadline = time.monotonic() + AGENT_WAIT_SECONDS
    while True:
        try:
            return client.submit_job(
                entrypoint=entrypoint,
                runtime_env=env,
                submission_id=submission_id,
                metadata=metadata,
                entrypoint_num_cpus=entrypoint_num_cpus,
            )
        except Exception as exc:
            # a head just started answers 500 "No available agent to submit job" until its
            # dashboard agent registers (seconds; longer on a loaded machine): wait for it
            if "No available agent" in str(exc) and time.monotonic() < deadline:
                time.sleep(2)
                continue
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
