"""recplat.runtime: a local Ray answers State API queries from its own dashboard, even with a second
Ray on the machine, and the driver's environment is left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Run in a fresh process: the test session's Ray (the `ray_local` fixture) is then a second Ray
# instance on this machine, as a user's `ray start` cluster would be beside a local `recplat run`.
PROBE = """
import json, os, ray
from recplat.runtime import init_ray

os.environ["RAY_API_SERVER_ADDRESS"] = "http://user-setting.invalid:1"
init_ray(num_cpus=1)

@ray.remote(num_cpus=0)
class Probe:
    # asks what Ray Train's placement-group cleaner asks every second: is this actor alive?
    def ask(self):
        from ray.util.state import get_actor

        me = ray.get_runtime_context().get_actor_id()
        state = get_actor(me, timeout=30)
        return (state.state if state else None), os.environ.get("RAY_API_SERVER_ADDRESS"), \
            os.environ.get("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"), os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")

probe = Probe.options(lifetime="detached", name="probe").remote()
state, url, preemption, check = ray.get(probe.ask.remote(), timeout=120)
print(json.dumps({"state": state, "worker_url": url, "preemption_watcher": preemption, "health_check": check,
                  "dashboard": ray._private.worker.get_dashboard_url(),
                  "driver_url": os.environ.get("RAY_API_SERVER_ADDRESS")}))
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_local_ray_finds_its_own_state_api_beside_another_ray(ray_local):
    assert ray_local.is_initialized()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=240,
                          env={**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["state"] == "ALIVE"
    assert seen["dashboard"].startswith("127.0.0.1:")  # loopback only
    assert seen["worker_url"] == "http://" + seen["dashboard"]
    assert seen["driver_url"] == "http://user-setting.invalid:1"  # the driver's own setting is kept
    assert seen["preemption_watcher"] == "0"  # no spot-instance notices on a local machine: no watcher actor
    assert seen["health_check"] == "0.2"  # Ray Train's controller checks its workers every 0.2 s, not 2 s


def test_environment_is_restored_after_the_block(monkeypatch):
    from recplat.runtime import _environment

    monkeypatch.setenv("RECPLAT_KEPT", "before")
    monkeypatch.delenv("RECPLAT_ADDED", raising=False)
    with pytest.raises(RuntimeError), _environment({"RECPLAT_KEPT": "inside", "RECPLAT_ADDED": "inside"}):
        assert os.environ["RECPLAT_KEPT"] == os.environ["RECPLAT_ADDED"] == "inside"
        raise RuntimeError("the block fails")
    assert os.environ["RECPLAT_KEPT"] == "before"
    assert "RECPLAT_ADDED" not in os.environ


def test_a_ray_start_up_timeout_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    """Two local Rays starting at once: the second's raylet times out and ray.init raises a bare
    Exception (ray/_private/node.py); it must reach the user as one line, exit 2."""
    import ray

    from recplat.cli import main

    def timed_out(**kwargs):
        raise Exception("The current node timed out during startup. This could happen because some of the "
                        "raylet failed to startup or the GCS has become overloaded.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the session's Ray may be up: act as a fresh process
    monkeypatch.setattr(ray, "init", timed_out)
    code = main(["prepare", "--num-cpus", "2", "--out", str(tmp_path / "ds")])  # a small input: only asked-for Ray
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("recplat: error: could not start or connect to a local Ray instance: The current node "
                          "timed out during startup.") and "another local Ray" in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "ds").exists()


def test_free_loopback_ports_are_distinct_and_bindable():
    import socket

    from recplat.runtime import free_loopback_ports

    ports = free_loopback_ports(64)  # one at a time, the OS had handed out one port twice in 9 (CI)
    assert len(set(ports)) == 64
    for port in ports[:4]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free again once returned
