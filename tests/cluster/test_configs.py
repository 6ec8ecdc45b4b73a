"""Cluster configs: the launcher YAMLs pass Ray's own autoscaler validation; KubeRay manifests parse."""

from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
LAUNCHERS = ["aws.yaml", "gcp.yaml"]


def _load(name, kind=None):
    """The document of `kind` in a (possibly multi-document) manifest; the only one without `kind`."""
    docs = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    if kind is None:
        assert len(docs) == 1, name
        return docs[0]
    (doc,) = [d for d in docs if d.get("kind") == kind]
    return doc


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_config_passes_rays_validation(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(name)
    validate_config(config)  # the file as written, against ray/autoscaler/ray-schema.json
    validate_config(prepare_config(config))  # and merged with the provider's defaults.yaml, as `ray up` does


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_shape(name):
    config = _load(name)
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and "GPU" not in head["resources"]
    workers = {k: v for k, v in nodes.items() if k != config["head_node_type"]}
    gpus = sorted(v["resources"]["GPU"] for v in workers.values())
    assert gpus[0] == 1 and gpus[-1] == 8  # one small and one big GPU type
    for node in workers.values():
        assert node["min_workers"] == 0 and node["max_workers"] >= 1
        market = node["node_config"].get("InstanceMarketOptions", {}).get("MarketType") or (
            node["node_config"].get("scheduling", {}).get("provisioningModel")
        )
        assert market in ("spot", "SPOT")
    assert config["max_workers"] >= sum(v["max_workers"] for v in workers.values())
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    assert any("pip install" in c and "recplat" in c for c in config["setup_commands"])
    excluded = set(config["rsync_exclude"])
    assert {".git", ".venv", "/data", "checkpoints", "outputs"} <= excluded


def _worker_groups(spec):
    return spec["workerGroupSpecs"]


def test_kuberay_raycluster():
    doc = _load("kuberay/raycluster.yaml", "RayCluster")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    spec = doc["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert "rayStartParams" in spec["headGroupSpec"]
    groups = _worker_groups(spec)
    assert groups
    for group in groups:
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1 and "rayStartParams" in group
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    env = {e["name"]: e for e in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]


def test_kuberay_rayjob():
    doc = _load("kuberay/rayjob.yaml", "RayJob")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert spec["entrypoint"].startswith("recplat run ")
    from recplat.catalog import Catalog

    job = spec["entrypoint"].split()[2]
    Catalog().get(job).require_ready()  # the template names a real, ready catalog job
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True and "rayStartParams" in cluster["headGroupSpec"]
    for group in _worker_groups(cluster):
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1 and "rayStartParams" in group
    yaml.safe_load(spec["runtimeEnvYAML"])


def test_runtime_env_file_matches_recplat_submit():
    from recplat.submit import ENV_VARS, EXCLUDES

    env = _load("runtime_env.yaml")
    assert env["working_dir"] == "."
    assert env["excludes"] == EXCLUDES
    assert env["env_vars"] == ENV_VARS


# --- security and durability (issue 19 items 1 and 6) ---------------------------------------------


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_turns_token_authentication_on(name):
    """The rendered config (what `ray up` runs): the head makes a token before `ray start --head`,
    which runs with RAY_AUTH_MODE=token; workers get the head's token and start with it."""
    from ray.autoscaler._private.util import prepare_config

    config = prepare_config(_load(name))
    head = config["head_start_ray_commands"]
    start = next(i for i, c in enumerate(head) if "ray start --head" in c)
    generate = next(i for i, c in enumerate(head) if "ray get-auth-token --generate" in c)
    assert generate < start and "RAY_AUTH_MODE=token " in head[start]
    assert "~/.ray/auth_token" in config["cluster_synced_files"]  # head -> workers, before their start commands
    worker = config["worker_start_ray_commands"]
    assert any("RAY_AUTH_MODE=token " in c and "ray start --address" in c for c in worker)
    assert any("test -s ~/.ray/auth_token" in c for c in worker)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_launcher_head_command_really_requires_a_token(tmp_path):
    """Run aws.yaml's head commands (venv and ports swapped for this machine): the job server it
    starts refuses a request without the token and answers one with the token it generated."""
    import os
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from recplat.runtime import free_loopback_ports
    from tests.test_submit import _kill_leftovers

    ray_bin = str(Path(sys.executable).parent / "ray")
    temp_dir = Path(f"/tmp/rptok{os.getpid()}")  # short: unix socket paths are limited
    names = ("ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "metrics-export-port", "runtime-env-agent-port", "node-manager-port")
    dash, gcs, objects, *others = free_loopback_ports(3 + len(names))
    extra = (f"--node-ip-address=127.0.0.1 --num-cpus=1 --temp-dir={temp_dir} --dashboard-port={dash} "
             f"--disable-usage-stats " + " ".join(f"--{n}={port}" for n, port in zip(names, others)))
    commands = []
    for command in _load("aws.yaml")["head_start_ray_commands"]:
        if command.strip().endswith("ray stop"):
            continue  # would stop every Ray of this user on the machine
        command = command.replace("~/venv/bin/ray", ray_bin).replace("--port=6379", f"--port={gcs}")
        command = command.replace("--object-manager-port=8076", f"--object-manager-port={objects}")
        command = command.replace("--autoscaling-config=~/ray_bootstrap_config.yaml", "")
        commands.append(command + (f" {extra}" if "ray start --head" in command else ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    env.update(HOME=str(tmp_path), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    try:
        for command in commands:  # one shell each, as the launcher runs them (a failing ulimit is not fatal)
            done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=200)
            assert done.returncode == 0, command + done.stdout[-2000:] + done.stderr[-2000:]
        token = (tmp_path / ".ray" / "auth_token").read_text().strip()
        assert len(token) >= 32 and oct((tmp_path / ".ray" / "auth_token").stat().st_mode & 0o777) == "0o600"
        url = f"http://127.0.0.1:{dash}/api/jobs/"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            if status is not None or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert status == 401  # no token: refused
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        assert urllib.request.urlopen(request, timeout=10).status == 200
    finally:
        _kill_leftovers(str(temp_dir))
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


def _pods(cluster_spec):
    yield cluster_spec["headGroupSpec"]["template"]
    for group in cluster_spec["workerGroupSpecs"]:
        yield group["template"]


@pytest.mark.parametrize("name, kind", [("kuberay/raycluster.yaml", "RayCluster"), ("kuberay/rayjob.yaml", "RayJob")])
def test_kuberay_dashboard_is_fenced_by_a_network_policy(name, kind):
    doc = _load(name, kind)
    cluster = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
    policy = _load(name, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for pod in _pods(cluster):  # every pod of the cluster is behind the policy
        assert selector.items() <= pod["metadata"]["labels"].items()
    rules = policy["spec"]["ingress"]
    assert rules and all(rule.get("from") for rule in rules)  # no rule admits everyone
    assert [r["from"][0]["podSelector"]["matchLabels"] for r in rules] == [selector, {"app.kubernetes.io/name": "kuberay-operator"}]
    assert rules[1]["ports"] == [{"port": 8265, "protocol": "TCP"}]
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"  # fenced, so allowed
    assert _load("kuberay/raycluster.yaml", "NetworkPolicy") == _load("kuberay/rayjob.yaml", "NetworkPolicy")


def test_kuberay_rayjob_submitter_has_the_token_and_results_outlive_the_cluster():
    spec = _load("kuberay/rayjob.yaml", "RayJob")["spec"]
    submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]
    env = {e["name"]: e for e in submitter["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "recplat-ray-token", "key": "token"}
    assert spec["shutdownAfterJobFinishes"] is True
    out = spec["entrypoint"].split("--out ")[1].split()[0]
    claim = _load("kuberay/results-pvc.yaml")
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for pod in _pods(spec["rayClusterSpec"]):  # the driver (head) and the Train workers see the same volume
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mounts = pod["spec"]["containers"][0]["volumeMounts"]
        (mount,) = [m for m in mounts if out.startswith(m["mountPath"] + "/")]
        assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_paper_profiles_survive_a_preempted_spot_worker():
    """The launcher configs run GPU workers on spot capacity: every ready paper run that trains
    restarts its worker group from the last checkpoint (TrainConfig.max_failures) instead of failing."""
    from recplat.catalog import Catalog
    from recplat.run import validate_job

    checked = 0
    for spec in Catalog().list(status="ready"):
        if "train" not in spec.resolve("paper").recipe:  # evaluation-only jobs (fig5_segments, fig6_zero_shot)
            continue
        for config in validate_job(spec, "paper"):
            if getattr(config, "stage", None) in ("evaluate", "zero_shot"):  # LLaRA scoring a finished run's weights
                continue
            assert config.train.max_failures >= 1, spec.name
            checked += 1
    assert checked >= 20
