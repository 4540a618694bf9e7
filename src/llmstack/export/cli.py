"""`llmstack export [--run R] [--stage S] OUT/`: a run's model as a Hugging Face folder.

The model and the tokenizer are both found through the run's run.json (the same resolver as
`llmstack chat`: default run = the newest, default stage = the most trained that exists), so the
weights and the tokenizer in the folder always belong together. Also `python -m llmstack.export.cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_export_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("out", type=Path, help="the folder to write (replaced if it holds an earlier export)")
    ap.add_argument("--run", default=None, help="run name under runs/ (default: the newest run)")
    ap.add_argument("--stage", default=None, help="rl | sft | midtrain | base (default: the most trained model)")
    ap.add_argument("--root", type=Path, default=Path("."), help="the project folder (default: .)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weights in the folder")


def cmd_export(args: argparse.Namespace) -> int:
    import torch  # imported here so `llmstack --help` stays fast

    from llmstack.chat.resolve import STAGES as LABELS
    from llmstack.chat.resolve import ResolveError, find_manifest, resolve_models
    from llmstack.export.card import model_card
    from llmstack.export.hf import export_model

    try:
        choices, label = resolve_models(args.root, run=args.run, stage=args.stage)
        choice = choices[label]
        run, manifest = find_manifest(Path(args.root), choice.run)
        payload = torch.load(choice.model_path, map_location="cpu", weights_only=True)
        card = model_card(Path(args.root), run, manifest, LABELS[label], payload["meta"], payload["model_config"],
                          args.out.name)  # fmt: skip
        del payload
        out = export_model(choice.model_path, choice.tokenizer_path, args.out, card, args.dtype)
    except (ResolveError, FileExistsError, ValueError, OSError) as err:
        print(f"llmstack export: {err}", file=sys.stderr)
        return 2
    for path in sorted(out.iterdir()):
        print(f"{path.stat().st_size:>12,}  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="llmstack export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_export_arguments(ap)
    return cmd_export(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
