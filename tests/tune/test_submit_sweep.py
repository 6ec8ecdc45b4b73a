"""A sweep submitted with the plain `ray job submit` to a loopback head node (tests/test_submit.py's
head, token authentication): MoLoRec's w_g search (after its stage 1), with the TINY random Llama."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from recplat.submit import connect
from recplat.tune.results import read_sweep
from tests.test_submit import ROOT, ray_head  # noqa: F401 (the module-scoped head fixture)
from tests.tune.test_mixture_search import FIG4, tiny_model_overrides


# heavy: passed in 443 s under load 22-41 on the 2-core machine (stage 1, Θ_s, 5 evaluation-only trials)
@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_the_w_g_search_through_ray_job_submit(ray_head, tmp_path):  # noqa: F811
    tiny = tiny_model_overrides(tmp_path)
    stage1 = ["recplat", "run", "molorec/stage1_general", "--profile", "smoke", "--out",
              str(tmp_path / "molorec-stage1_general-smoke"), *tiny]  # fmt: skip
    sweep = ["recplat", "tune", FIG4, "--profile", "smoke", "--search", "w_g", "--out", str(tmp_path / "sweep"),
             *tiny, "recipe.specific.train_prompts=20"]  # fmt: skip
    entrypoint = f"{shlex.join(stage1)} && {shlex.join(sweep)}"
    job_id = "recplat-tune-e2e"
    done = subprocess.run(
        [f"{Path(sys.executable).parent}/ray", "job", "submit", "--address", ray_head["address"], "--submission-id",
         job_id, "--runtime-env", "cluster/runtime_env.yaml", "--", "bash", "-c", entrypoint],
        cwd=ROOT, env=ray_head["env"], capture_output=True, text=True, timeout=1700,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert str(connect(ray_head["address"]).get_job_status(job_id).value) == "SUCCEEDED"
    record = read_sweep(tmp_path / "sweep")
    assert len(record["rows"]) == 5 and all(r["status"] == "done" for r in record["rows"])
    assert "Best trial" in done.stdout and record["command"] in done.stdout
