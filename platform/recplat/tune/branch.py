"""A search whose trials share their first updates (a search's `branch:`, space.Branch): each
shared start, the trunk, is trained once, and the trials branch from its last checkpoint.

    recplat tune cprec/cpt --profile smoke --search wsa

CPRec's WSA phases (docs/tuning.md): the trials with the same warm-up end and peak LR read the same
rows at the same learning rates up to the stable phase's end S, and differ in their annealing. Their
trunk is the run with no annealing (anneal_end = S); each trial starts from the trunk's step-S
checkpoint (`recipe.train.branch_from`) and anneals from there. The training spine refuses a branch
that would have trained the trunk's updates otherwise (train/checkpoint.py check_branchable), so a
trial ends with the weights of the same run made in one go, and the best trial's command needs no trunk.

Two Tune experiments, one after the other:

    <sweep>/tune-trunks/        the trunks (one trial per value of the non-branch keys; FIFO)
    <sweep>/trunks/<trial id>/  each trunk's run directory (its checkpoints)
    <sweep>/tune/, trials/      the search's trials, each branching from its trunk

`--resume` restores whichever of the two the driver had reached: finished trunks are not trained again.
"""

from __future__ import annotations

from recplat.errors import RecplatError
from recplat.tune.space import override_text, plain_values, trunk_key
from recplat.tune.trial import LAST_CHECKPOINT, SweepContext, run_trial

TRUNKS_DIR = "trunks"


def trunk_overrides(search) -> list[str]:
    """The trunk run's values of the branch keys, as `key=value` overrides."""
    return [override_text(key, value) for key, value in search.branch.trunk.items()]


def trunk_params(search) -> dict:
    """The trunks' search space: the search's without the branch keys (grids only: space.Branch)."""
    return {key: param for key, param in search.space.items() if key not in search.branch.keys}


def run_trunks(plan, resume: bool, mlflow: bool = False) -> dict[str, dict] | None:
    """Train (or, resuming, finish) every trunk; trunk key -> {trial, params, checkpoint}. None when
    interrupted. A failed trunk stops the sweep before its branches start."""
    from ray import tune

    from recplat.tune.experiment import experiment_tuner, grid_points, interrupted

    search = plan.search
    context = SweepContext(plan.spec.name, plan.profile, str(plan.out), (*plan.overrides, *trunk_overrides(search)),
                           search.metric, plan.catalog, folder=TRUNKS_DIR)  # fmt: skip
    trainable = tune.with_resources(tune.with_parameters(run_trial, sweep=context), dict(search.resources))
    params = trunk_params(search)
    print(f"[tune] training {grid_points(params)} trunk run(s) ({' '.join(trunk_overrides(search))}); "
          "the trials branch from them", flush=True)
    space = {key: param.to_tune() for key, param in params.items()}
    grid = experiment_tuner(plan, trainable, space, resume, trunks=True, mlflow=mlflow).fit()
    if interrupted(plan, plan.trunk_path, grid_points(params)):
        return None
    trunks, failed = {}, []
    for result in grid:
        config = plain_values(result.config or {})
        checkpoint = (result.metrics or {}).get(LAST_CHECKPOINT)
        if result.error is not None or not checkpoint:
            reason = str(result.error).strip().splitlines()[-1] if result.error is not None else "no checkpoint"
            failed.append(f"{' '.join(override_text(k, v) for k, v in config.items()) or 'the trunk'}: {reason}")
            continue
        trunks[trunk_key(config, search.branch.keys)] = {"trial": result.metrics.get("trial_id"), "params": config,
                                                         "checkpoint": checkpoint}  # fmt: skip
    if failed:
        raise RecplatError(f"{plan.where}: {len(failed)} trunk run(s) failed ({'; '.join(failed)}); "
                           f"their branches cannot start. Fix the cause and continue with --resume")
    return trunks
