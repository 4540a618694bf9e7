# `snakemake chat`: serve the first run's chat model in a Gradio app on chat.host:chat.port
# until stopped. Not part of `all`; it writes nothing but its log.


rule chat:
    input:
        unpack(chat_model),
    localrule: True
    params:
        run=RUNS[0].name,
    conda:
        "../../envs/llmstack.yaml"
    log:
        f"runs/{RUNS[0].name}/chat.log",
    shell:
        "llmstack serve --run {params.run} 2>&1 | tee {log}"
