# The trained stages. Step checkpoints live in artifacts/<stage>/<key>/ckpt/ (undeclared, so a
# crash or rerun never deletes them; keyed by the stage address, so they never go stale).
# Training jobs take every core, so sweeps train one model at a time on a node.


rule pretrain:
    input:
        unpack(stage_inputs("pretrain")),
    output:
        **stage_outputs("pretrain"),
    params:
        config=slice_json("pretrain"),
    resources:
        execution=execution_json("pretrain"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("pretrain"),
    threads: workflow.cores
    shell:
        launch("pretrain")


rule midtrain:
    input:
        unpack(stage_inputs("midtrain")),
    output:
        **stage_outputs("midtrain"),
    params:
        config=slice_json("midtrain"),
    resources:
        execution=execution_json("midtrain"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("midtrain"),
    threads: workflow.cores
    shell:
        launch("midtrain")


rule sft:
    input:
        unpack(stage_inputs("sft")),
    output:
        **stage_outputs("sft"),
    params:
        config=slice_json("sft"),
    resources:
        execution=execution_json("sft"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("sft"),
    threads: workflow.cores
    shell:
        launch("sft")


rule rl:
    input:
        unpack(stage_inputs("rl")),
    output:
        **stage_outputs("rl"),
    params:
        config=slice_json("rl"),
    resources:
        execution=execution_json("rl"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("rl"),
    threads: workflow.cores
    shell:
        launch("rl")
