rule data:
    output:
        manifest="artifacts/data/{key}/manifest.json",
    params:
        config=slice_json("data"),
    resources:
        execution=execution_json("data"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        "artifacts/data/{key}/data.log",
    threads: 2
    shell:
        launch("data", [])


rule tokenizer:
    input:
        data=upstream("tokenizer", "data", "manifest.json"),
    output:
        model="artifacts/tokenizer/{key}/tokenizer.model",
        stats="artifacts/tokenizer/{key}/tokenizer.json",
    params:
        config=slice_json("tokenizer"),
    resources:
        execution=execution_json("tokenizer"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        "artifacts/tokenizer/{key}/tokenizer.log",
    threads: 2
    shell:
        launch("tokenizer", ["data"])
