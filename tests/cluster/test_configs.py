"""Cluster configs: the launcher YAMLs pass Ray's own autoscaler validation; KubeRay manifests parse."""

from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
LAUNCHERS = ["aws.yaml", "gcp.yaml"]


def _load(name):
    return yaml.safe_load((CLUSTER / name).read_text())


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
    doc = _load("kuberay/raycluster.yaml")
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
    doc = _load("kuberay/rayjob.yaml")
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
