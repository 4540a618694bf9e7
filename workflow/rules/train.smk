# The trained stages. Step checkpoints live in artifacts/<stage>/<key>/ckpt/ (undeclared, so a
# crash or rerun never deletes them; keyed by the stage address, so they never go stale).
# Training jobs take every core, so sweeps train one model at a time on a node; under Slurm each
# asks for `<stage>.nodes` nodes and `<stage>.gpus_per_node` GPUs (train_resources in common.smk).


rule pretrain:
    input:
        unpack(stage_inputs("pretrain")),
    output:
        **stage_outputs("pretrain"),
    params:
        config=slice_json("pretrain"),
    resources:
        **train_resources("pretrain"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("pretrain"),
    threads: train_threads
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
        **train_resources("midtrain"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("midtrain"),
    threads: train_threads
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
        **train_resources("sft"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("sft"),
    threads: train_threads
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
        **train_resources("rl"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("rl"),
    threads: train_threads
    shell:
        launch("rl")
