"""The `llmstack` command.

llmstack config [OVERRIDES...] [--preset P]   print the resolved config, derived numbers, stage keys
llmstack resume [RUN] [-- SNAKEMAKE ARGS...]  unlock after a crash and finish the run as it was started
llmstack chat [--run R] [--stage S] [-p PROMPT]  talk to a trained model in the terminal
llmstack serve [--run R] [--stage S] [--port P]  the Gradio chat + OpenAI-compatible API
llmstack report [--run R] [OVERRIDES...]       rewrite runs/<R>/report.md (default: every run and sweep)
llmstack export [--run R] [--stage S] OUT/     write a run's model as a Hugging Face folder
"""

from __future__ import annotations

import argparse
import sys

from omegaconf import OmegaConf

from llmstack.chat.cli import add_chat_arguments, add_serve_arguments, cmd_chat, cmd_serve
from llmstack.export.cli import add_export_arguments, cmd_export


def cmd_config(args: argparse.Namespace) -> int:
    from llmstack.config import one_line, param_counts
    from llmstack.plan import plan_runs

    try:
        plans = plan_runs(args.preset, args.run, " ".join(args.overrides), args.sweep)
    except Exception as err:
        print(f"llmstack: invalid config: {one_line(err)}", file=sys.stderr)
        return 2
    for plan in plans:
        cfg = plan.cfg
        counts = param_counts(cfg.model)
        p = cfg.pretrain
        print(f"# run {plan.name}  (preset={plan.preset} overrides={plan.overrides})")
        if not args.keys_only:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            print(
                f"# derived: {counts['total']:,} parameters ({counts['scaling']:,} scaling), "
                f"{p.total_batch_tokens:,} tokens/step x {p.max_steps:,} steps = "
                f"{p.total_batch_tokens * p.max_steps:,} tokens "
                f"({p.total_batch_tokens * p.max_steps / counts['scaling']:.1f} tokens/param)"
            )
        for name, spec in plan.stages.items():
            print(f"# {name:14s} {spec.dir}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from llmstack.resume import resume

    return resume(args.run, args.snakemake_args)


def split_resume_argv(argv: list[str]) -> tuple[str | None, list[str]] | None:
    """(RUN, snakemake arguments) of `resume [RUN] [ARGS...] [-- ARGS...]`, or None to let argparse
    answer (-h). Parsed by hand: argparse rejects unknown flags such as `--cores 2` and would take
    the `2`, or `overrides=...` after `--config`, for RUN."""
    cut = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:cut], argv[cut + 1 :]
    if {"-h", "--help"} & set(head):
        return None
    run = head[0] if head and not head[0].startswith("-") else None
    return run, head[1 if run else 0 :] + tail


def cmd_report(args: argparse.Namespace) -> int:
    from llmstack.config import build_section, compose_config, one_line
    from llmstack.report import regenerate

    try:
        cfg = compose_config(args.preset, args.overrides)
    except Exception as err:
        print(f"llmstack: invalid config: {one_line(err)}", file=sys.stderr)
        return 2
    prices = build_section("report", OmegaConf.to_container(cfg.report, resolve=True))
    try:
        written = regenerate(args.runs_dir, args.run, prices)
    except (FileNotFoundError, ValueError) as err:
        print(f"llmstack: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="llmstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config", help="print the resolved config, derived sizes and stage folders")
    c.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.depth=12")
    c.add_argument("--preset", default="tiny")
    c.add_argument("--run", default=None)
    c.add_argument("--sweep", default="", help='Hydra sweep, e.g. "model.depth=4,6"')
    c.add_argument("--keys-only", action="store_true", help="print only the stage folders")
    c.set_defaults(func=cmd_config)
    r = sub.add_parser("resume", help="unlock after a crash and finish the run as it was started")
    r.add_argument("run", nargs="?", help="a run under runs/ (default: the last run started here)")
    r.add_argument("snakemake_args", nargs="*", help="after --: passed to snakemake (e.g. -- --cores 2 -n)")
    r.set_defaults(func=cmd_resume)
    ch = sub.add_parser("chat", help="talk to a trained model in the terminal (interactive or -p)")
    add_chat_arguments(ch)
    ch.set_defaults(func=cmd_chat)
    sv = sub.add_parser("serve", help="serve the Gradio chat and an OpenAI-compatible API")
    add_serve_arguments(sv)
    sv.set_defaults(func=cmd_serve)
    rp = sub.add_parser("report", help="rewrite runs/<run>/report.md (and sweep.md) from the stage results")
    rp.add_argument("--run", default=None, help="one run or sweep folder name under runs/ (default: all)")
    rp.add_argument("--runs-dir", default="runs", help="the runs folder (default: ./runs)")
    rp.add_argument("--preset", default="tiny", help="config preset the report.* prices come from")
    rp.add_argument("overrides", nargs="*", help="Hydra overrides of report.*, e.g. report.gpu_hour_price=2.5")
    rp.set_defaults(func=cmd_report)
    ex = sub.add_parser("export", help="write a run's model as a Hugging Face folder (transformers, trust_remote_code)")
    add_export_arguments(ex)
    ex.set_defaults(func=cmd_export)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["resume"] and (split := split_resume_argv(argv[1:])) is not None:
        return cmd_resume(argparse.Namespace(run=split[0], snakemake_args=split[1]))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
