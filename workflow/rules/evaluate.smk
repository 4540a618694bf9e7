rule base_eval:
    input:
        model=upstream("base_eval", "pretrain", "model.pt"),
        tokenizer=upstream("base_eval", "tokenizer", "tokenizer.model"),
        data=upstream("base_eval", "data", "manifest.json"),
    output:
        result="artifacts/base_eval/{key}/eval.json",
    params:
        config=slice_json("base_eval"),
    resources:
        execution=execution_json("base_eval"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        "artifacts/base_eval/{key}/base_eval.log",
    threads: workflow.cores
    shell:
        launch("base_eval", ["model", "tokenizer", "data"])


rule eval:
    input:
        model=eval_model,
        tokenizer=upstream("eval", "tokenizer", "tokenizer.model"),
    output:
        result="artifacts/eval/{key}/eval.json",
    params:
        config=slice_json("eval"),
    resources:
        execution=execution_json("eval"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        "artifacts/eval/{key}/eval.log",
    threads: workflow.cores
    shell:
        launch("eval", ["model", "tokenizer"])
