# The trained stages. Step checkpoints live in artifacts/<stage>/<key>/ckpt/ (undeclared, so a
# crash or rerun never deletes them; keyed by the stage address, so they never go stale).
# Training jobs take every core, so sweeps train one model at a time on a node.


rule pretrain:
    input:
        data=upstream("pretrain", "data", "manifest.json"),
        tokenizer=upstream("pretrain", "tokenizer", "tokenizer.model"),
    output:
        model="artifacts/pretrain/{key}/model.pt",
        metrics="artifacts/pretrain/{key}/metrics.json",
    params:
        config=slice_json("pretrain"),
    resources:
        execution=execution_json("pretrain"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        "artifacts/pretrain/{key}/pretrain.log",
    threads: workflow.cores
    shell:
        launch("pretrain", ["data", "tokenizer"])


rule midtrain:
    input:
        model=upstream("midtrain", "pretrain", "model.pt"),
        tokenizer=upstream("midtrain", "tokenizer", "tokenizer.model"),
    output:
        model="artifacts/midtrain/{key}/model.pt",
        metrics="artifacts/midtrain/{key}/metrics.json",
    params:
        config=slice_json("midtrain"),
    resources:
        execution=execution_json("midtrain"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        "artifacts/midtrain/{key}/midtrain.log",
    threads: workflow.cores
    shell:
        launch("midtrain", ["model", "tokenizer"])


rule sft:
    input:
        model=upstream("sft", "midtrain", "model.pt"),
        tokenizer=upstream("sft", "tokenizer", "tokenizer.model"),
    output:
        model="artifacts/sft/{key}/model.pt",
        metrics="artifacts/sft/{key}/metrics.json",
    params:
        config=slice_json("sft"),
    resources:
        execution=execution_json("sft"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        "artifacts/sft/{key}/sft.log",
    threads: workflow.cores
    shell:
        launch("sft", ["model", "tokenizer"])


rule rl:
    input:
        model=upstream("rl", "sft", "model.pt"),
        tokenizer=upstream("rl", "tokenizer", "tokenizer.model"),
    output:
        model="artifacts/rl/{key}/model.pt",
        metrics="artifacts/rl/{key}/metrics.json",
    params:
        config=slice_json("rl"),
    resources:
        execution=execution_json("rl"),
    conda:
        "../../envs/llmstack.yaml"
    log:
        "artifacts/rl/{key}/rl.log",
    threads: workflow.cores
    shell:
        launch("rl", ["model", "tokenizer"])
