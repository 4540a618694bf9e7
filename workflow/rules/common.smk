# The config bridge: compose Hydra once, plan every run's stage addresses, and give rules their
# inputs, config slices (params: sorted JSON, a rerun trigger) and execution settings
# (resources: never a rerun trigger, so device counts and batch splits do not rerun anything).
import json
import sys

from llmstack.config import one_line, plan_runs


def _plan():
    try:
        return plan_runs(
            preset=str(config.get("preset") or "tiny"),
            run=config.get("run") or None,
            overrides=str(config.get("overrides") or ""),  # `overrides=` arrives as None
            sweep=str(config.get("sweep") or ""),
        )
    except Exception as err:  # Hydra's message, one line, before any job starts
        sys.exit(f"llmstack: invalid config: {one_line(err)}")


RUNS = _plan()
RUN_BY_NAME = {r.name: r for r in RUNS}
SWEEP_NAME = str(config.get("run") or config.get("preset") or "tiny") + "-sweep"
SPECS = {(s.stage, s.key): s for r in RUNS for s in r.stages.values()}


wildcard_constraints:
    key="[0-9a-f]{10}",
    run="[^/]+",


def spec(stage, wildcards):
    return SPECS[(stage, wildcards.key)]


def slice_json(stage):
    """params: the stage's config slice as sorted JSON (builtins, so Snakemake tracks changes)."""
    return lambda wc: spec(stage, wc).config_json()


def execution_json(stage):
    return lambda wc: json.dumps(spec(stage, wc).execution, sort_keys=True)


def upstream(stage, up, filename):
    """input: a file of the stage `up` that this stage's config names as its input."""
    return lambda wc: f"artifacts/{up}/{spec(stage, wc).config['inputs'][up]}/{filename}"


def launch(stage, inputs):
    """The one shell line of a stage rule: `llmstack.launch` picks torchrun or plain python."""
    args = " ".join(f"--input {name}={{input.{name}}}" for name in inputs)
    return (
        f"python -m llmstack.launch {stage} artifacts/{stage}/{{wildcards.key}} "
        f"--config {{params.config:q}} --execution {{resources.execution:q}} {args} > {{log}} 2>&1"
    )


def eval_model(wc):
    """input of an eval job: the chat model its config names."""
    s = spec("eval", wc)
    return f"artifacts/{s.config['model_stage']}/{s.config['inputs']['model']}/model.pt"


def run_outputs(wc):
    """input of a report: every stage result of the run, plus its manifest."""
    return {"run": f"runs/{wc.run}/run.json", **RUN_BY_NAME[wc.run].result_files()}


def chat_model(wc):
    """input of `snakemake chat`: the first run's model of the stage chat.stage names."""
    run = RUNS[0]
    return {"model": f"{run.stages[run.cfg.chat.stage].dir}/model.pt", "run": f"runs/{run.name}/run.json"}
