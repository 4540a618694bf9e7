# The config bridge: compose Hydra once, plan every run's stage addresses, and give rules their
# inputs and outputs (from the stage table, llmstack.pipeline), config slices (params: sorted
# JSON, a rerun trigger) and execution settings (resources: never a rerun trigger, so device
# counts and batch splits do not rerun anything).
import json
import sys

from omegaconf import OmegaConf

from llmstack.cluster import STOP_SIGNAL, WARN_SECONDS, JobAsk, check_jobs
from llmstack.config import one_line
from llmstack.launch import training_settings
from llmstack.pipeline import STAGES
from llmstack.plan import plan_runs
from llmstack.resume import record_invocation


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
# A stage folder shared by a sweep's runs is made once, by (and logged under) the first run needing it.
SPECS = {}
for _run in RUNS:
    for _spec in _run.stages.values():
        SPECS.setdefault((_spec.stage, _spec.key), _spec)


wildcard_constraints:
    key="[0-9a-f]{10}",
    run="[^/]+",


def spec(stage, wildcards):
    return SPECS[(stage, wildcards.key)]


def stage_inputs(stage):
    """input (unpack it): {input name: declared upstream output} from the stage table."""
    return lambda wc: spec(stage, wc).input_files()


def stage_outputs(stage):
    """output (unpack it with **): the stage's declared outputs, meta.json included; its result file
    (metrics.json, eval.json...) is marked for `snakemake --report`, in a category per stage."""
    outs = {name: f"artifacts/{stage}/{{key}}/{file}" for name, file in STAGES[stage].declared.items()}
    result = STAGES[stage].result
    outs[result] = report(outs[result], caption="../report/stage_result.rst", category=stage)
    return outs


def stage_log(stage):
    return f"artifacts/{stage}/{{key}}/{stage}.log"


def slice_json(stage):
    """params: the stage's config slice as sorted JSON (builtins, so Snakemake tracks changes)."""
    return lambda wc: spec(stage, wc).config_json()


def execution_json(stage):
    return lambda wc: json.dumps(spec(stage, wc).execution, sort_keys=True)


def job_resources(stage):
    """Resources of any stage's job (unpacked with **): execution settings, and the cluster job's
    size from the stage table (`job`: CPUs, memory, runtime). They sit in the rule, not the profile,
    because Snakemake replaces a profile's whole set-resources/default-resources list with the
    command line's: here, `--set-resources pretrain:runtime=2880` changes that one value."""
    size = STAGES[stage].job
    return dict(
        execution=execution_json(stage),
        cpus_per_task=size.cpus,
        mem_mb=size.mem_gb * 1000,
        runtime=round(size.hours * 60),
    )


REPORT_JOB = dict(cpus_per_task=1, mem_mb=4000, runtime=30)  # a report's cluster job (report.smk)


def _loop_settings(stage, wc):
    """The stage's own config section, typed, execution settings included (nodes, gpus_per_node...)."""
    s = spec(stage, wc)
    return training_settings(stage, s.config, s.execution)


def train_resources(stage):
    """Resources of a training job, unpacked with **; the execution settings, plus what a Slurm job
    of the stage asks for, from `<stage>.nodes` and `<stage>.gpus_per_node` (execution settings,
    so never a rerun trigger). Several nodes: `tasks` = nodes (one torchrun agent per node) and
    `mpi="srun"`, which switches off the SLURM plugin's own srun so llmstack.launch calls srun itself.
    CPUs, memory and runtime come from job_resources, partition and account from the command line.
    `slurm_extra` asks Slurm for the time-limit warning the harness checkpoints on (cluster.py)."""
    nodes = lambda wc: _loop_settings(stage, wc).nodes
    gpus = lambda wc: _loop_settings(stage, wc).gpus_per_node
    return dict(
        **job_resources(stage),
        nodes=nodes,
        tasks=nodes,
        tasks_per_gpu=0,  # else the plugin turns `tasks` into --ntasks-per-gpu
        mpi=lambda wc: "srun" if nodes(wc) > 1 else None,  # None: the resource is left out
        gres=lambda wc: f"gpu:{gpus(wc)}" if gpus(wc) > 0 else None,
        slurm_extra=f"--signal={STOP_SIGNAL.name[3:]}@{WARN_SECONDS}",
    )


def train_threads(wildcards):
    """threads of a training rule. Locally every core (sweeps train one model at a time); under a
    cluster executor workflow.cores is the *submit host's* count, so the job's CPUs come from the
    `cpus_per_task` resource (job_resources) and threads stays 1 there. A function: the executor
    is known only once jobs are built, not while this file is read."""
    return workflow.cores if workflow.local_exec else 1


def check_cluster():
    """onstart: what the executor cannot serve (nodes > 1 locally, an unknown Slurm partition...)
    fails in one line after the DAG is built and before any job is submitted."""
    asks = [
        JobAsk(job.rule.name, int(job.resources.get("nodes") or 1), job.resources.get("slurm_partition"), job.is_local)
        for job in workflow.dag.needrun_jobs()
    ]
    check_jobs(asks, workflow.executor_plugin.name)


def launch(stage):
    """The one shell line of a stage rule: `llmstack.launch` picks torchrun or plain python."""
    args = " ".join(f"--input {name}={{input.{name}}}" for name in STAGES[stage].inputs)
    return (
        f"python -m llmstack.launch {stage} artifacts/{stage}/{{wildcards.key}} "
        f"--config {{params.config:q}} --execution {{resources.execution:q}} {args} > {{log}} 2>&1"
    )


def report_json():
    """params of the report rules: the report section (prices), so an override reaches them."""
    return json.dumps({"report": OmegaConf.to_container(RUNS[0].cfg.report, resolve=True)}, sort_keys=True)


def run_outputs(wc):
    """input of a report: every stage's meta.json of the run, plus its manifest."""
    return {"run": f"runs/{wc.run}/run.json", **RUN_BY_NAME[wc.run].meta_files()}


def chat_model(wc):
    """input of `snakemake chat`: the first run's model of the stage chat.stage names."""
    run = RUNS[0]
    return {"model": f"{run.stages[run.cfg.chat.stage].dir}/model.pt", "run": f"runs/{run.name}/run.json"}
