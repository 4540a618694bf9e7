# Evaluation: the base model after pretraining; each chat model (one eval instance per model).


rule base_eval:
    input:
        unpack(stage_inputs("base_eval")),
    output:
        **stage_outputs("base_eval"),
    params:
        config=slice_json("base_eval"),
    resources:
        **job_resources("base_eval"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("base_eval"),
    threads: train_threads
    shell:
        launch("base_eval")


rule eval:
    input:
        unpack(stage_inputs("eval")),
    output:
        **stage_outputs("eval"),
    params:
        config=slice_json("eval"),
    resources:
        **job_resources("eval"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("eval"),
    threads: train_threads
    shell:
        launch("eval")
