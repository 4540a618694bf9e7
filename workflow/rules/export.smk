# `snakemake export`: write the first run's chat model (the stage chat.stage names, as `snakemake chat`
# serves it) as a Hugging Face folder runs/<run>/export/<stage>/. Not part of `all`.
# Inputs: the model and the run's tokenizer (one run.json names both), plus the meta.json of every
# stage the model card reports, so the card is written from finished stages (evaluations included).
from llmstack.export.card import card_instances

EXPORT_RUN = RUNS[0]
EXPORT_STAGE = EXPORT_RUN.cfg.chat.stage


# Wildcard-free, so a dict here rather than an input function (the lint's advice for a rule file).
EXPORT_FILES = {
    "tokenizer": f"{EXPORT_RUN.stages['tokenizer'].dir}/tokenizer.model",
    **{f"meta_{key}": path for name, (key, path) in zip(EXPORT_RUN.stages, EXPORT_RUN.meta_files().items())
       if name in card_instances(EXPORT_STAGE)},  # fmt: skip
}


rule export:
    input:
        unpack(chat_model),
        **EXPORT_FILES,
    output:
        directory(f"runs/{EXPORT_RUN.name}/export/{EXPORT_STAGE}"),
    localrule: True
    params:
        run=EXPORT_RUN.name,
        stage=EXPORT_STAGE,
    conda:
        "../../envs/llmstack.yaml"
    log:
        f"runs/{EXPORT_RUN.name}/export.log",
    # python -m: the same entry as `llmstack export`, without depending on the cli registration
    shell:
        "python -m llmstack.export.cli {output} --run {params.run} --stage {params.stage} > {log} 2>&1"
