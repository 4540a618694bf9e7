rule run_manifest:
    output:
        "runs/{run}/run.json",
    priority: 100  # first: `llmstack serve` finds the run (and each chat model as it lands) through it
    params:
        manifest=lambda wc: json.dumps(RUN_BY_NAME[wc.run].manifest(), sort_keys=True),
    localrule: True
    conda:
        "../../envs/llmstack.yaml"
    log:
        "runs/{run}/run_manifest.log",
    shell:
        "python -m llmstack.stages.run_manifest {output:q} {params.manifest:q} > {log} 2>&1"


rule report:
    input:
        unpack(run_outputs),
    output:
        # the PNGs always exist (the stage draws a placeholder for a missing curve): report() needs them
        card=report("runs/{run}/report.md", caption="../report/report_card.rst", category="report card"),
        loss=report("runs/{run}/loss_curves.png", caption="../report/loss_curves.rst", category="report card"),
        reward=report("runs/{run}/reward_curves.png", caption="../report/reward_curves.rst", category="report card"),
    params:
        config=report_json(),
    resources:
        **REPORT_JOB,
    conda:
        "../../envs/llmstack.yaml"
    log:
        "runs/{run}/report.log",
    shell:
        "python -m llmstack.launch report runs/{wildcards.run} --config {params.config:q} > {log} 2>&1"


rule sweep_report:
    input:
        [f"runs/{r.name}/report.md" for r in RUNS],
    output:
        f"runs/{SWEEP_NAME}/sweep.md",
    params:
        runs=[f"runs/{r.name}" for r in RUNS],
        config=report_json(),
    resources:
        **REPORT_JOB,
    conda:
        "../../envs/llmstack.yaml"
    log:
        f"runs/{SWEEP_NAME}/sweep.log",
    shell:
        "python -m llmstack.launch sweep_report {output:q} {params.runs:q} --config {params.config:q} > {log} 2>&1"
