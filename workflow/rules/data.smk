# The data stages: text shards, then the tokenizer trained on them.


rule data:
    output:
        **stage_outputs("data"),
    params:
        config=slice_json("data"),
    resources:
        **job_resources("data"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("data"),
    threads: 2
    shell:
        launch("data")


rule tokenizer:
    input:
        unpack(stage_inputs("tokenizer")),
    output:
        **stage_outputs("tokenizer"),
    params:
        config=slice_json("tokenizer"),
    resources:
        **job_resources("tokenizer"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        stage_log("tokenizer"),
    threads: 2
    shell:
        launch("tokenizer")
