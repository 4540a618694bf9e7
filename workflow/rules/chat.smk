# `snakemake chat`: serve the first run's chat model in a Gradio app on chat.host:chat.port
# until stopped. Not part of `all`; it writes nothing but its log.


rule chat:
    input:
        unpack(chat_model),
    localrule: True
    params:
        run=RUNS[0].name,
        stage=RUNS[0].cfg.chat.stage,
        preset=RUNS[0].preset,
        overrides=RUNS[0].overrides,
    conda:
        "../../envs/llmstack.yaml"
    log:
        f"runs/{RUNS[0].name}/chat.log",
    shell:
        "llmstack serve --run {params.run} --stage {params.stage} --preset {params.preset} {params.overrides:q} "
        "2>&1 | tee {log}"
