# `snakemake chat`: serve the first run's chat model in a Gradio app on chat.host:chat.port
# until stopped. Not part of `all`; it writes nothing.


def chat_model(wc):
    run = RUNS[0]
    stage = run.cfg.chat.stage
    return {"model": f"{run.stages[stage].dir}/model.pt", "run": f"runs/{run.name}/run.json"}


rule chat:
    input:
        unpack(chat_model),
    localrule: True
    params:
        run=RUNS[0].name,
    shell:
        "llmstack serve --run {params.run}"
