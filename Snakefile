# llmstack: raw text -> tokenizer -> GPT -> midtrain -> SFT -> RL -> eval -> report (-> chat).
#
# Path grammar (see DESIGN.md "stage addresses"):
#   artifacts/<stage>/<key>/...   key = hash(stage's config slice + keys of the stages it reads)
#   artifacts/eval/<key>/         one per evaluated chat model (midtrain, sft, rl)
#   runs/<run>/run.json           which stage folders make up a run; runs/<run>/report.md
#
# Config (Snakemake --config takes plain top-level keys only):
#   snakemake --cores all --config preset=tiny run=NAME overrides="model.depth=6 sft.init_lr_frac=0.05" \
#       sweep="model.depth=4,6"
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"


# `snakemake --report report.html`: the outputs marked with report() in workflow/rules/, under this text.
report: "workflow/report/workflow.rst"


# Snakemake calls this only for a real execution (never -n, --lint, --dag, --unlock), after the
# DAG is built and before any job: check what the executor cannot serve, then write the record
# `llmstack resume` replays (beside run.json, but no rule's input or output).
onstart:
    check_cluster()
    record_invocation(config, [r.name for r in RUNS] + ([SWEEP_NAME] if len(RUNS) > 1 else []),
                      workflow.main_snakefile)  # fmt: skip


rule all:
    input:
        [f"runs/{r.name}/report.md" for r in RUNS],
        [f"runs/{SWEEP_NAME}/sweep.md"] if len(RUNS) > 1 else [],
    default_target: True


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/chat.smk"
include: "workflow/rules/export.smk"
