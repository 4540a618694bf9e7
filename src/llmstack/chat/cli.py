"""The `llmstack chat` and `llmstack serve` subcommands.

    llmstack chat                           # newest run, its most trained model, interactive
    llmstack chat --stage sft -p "What is 12*7?"
    llmstack chat --model m.pt --tokenizer tokenizer.model
    llmstack serve [--run R] [--stage S] [--host H] [--port P] [OVERRIDES...]

Run from the project folder: the default run is the newest `runs/*/run.json`, the default model
the most trained stage that exists (rl, then sft, midtrain, base). Torch and gradio are imported
only when a command runs, so `llmstack --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from llmstack.config import ChatConfig
from llmstack.pipeline import CHAT_STAGES

_DEFAULTS = ChatConfig()
# --stage accepts each chat label and each stage name it stands for (pretrain for base)
CHOICES = list(dict.fromkeys(x for s in CHAT_STAGES for x in (s.chat_label, s.name)))
HELP = "interactive: type a message; /clear starts a new conversation; /quit or Ctrl-D ends"


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=None, help="run name under runs/ (default: the newest)")
    p.add_argument("--stage", default=None, choices=CHOICES,
                   help="which model of the run (default: the most trained that exists)")  # fmt: skip
    p.add_argument("--model", default=None, help="a model.pt to load instead of a run's")
    p.add_argument("--tokenizer", default=None, help="the tokenizer.model that goes with --model")
    p.add_argument("--project", default=".", help="project folder holding runs/ and artifacts/")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])


def add_chat_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_arguments(p)
    p.add_argument("-p", "--prompt", default=None, help="answer this one prompt and exit")
    p.add_argument("--temperature", type=float, default=_DEFAULTS.temperature, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=_DEFAULTS.top_k, help="0 = off")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--max-tokens", type=int, default=_DEFAULTS.max_new_tokens)
    p.add_argument("--seed", type=int, default=None)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_arguments(p)
    p.add_argument("--host", default=None, help="default: the config's chat.host (127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default: the config's chat.port")
    p.add_argument("--share", action="store_true", default=None, help="also open a public gradio link")
    p.add_argument("--concurrency", type=int, default=4, help="chats generated at once")
    p.add_argument("--preset", default="tiny", help="config preset the chat.* settings come from")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of chat.*, e.g. chat.temperature=0.5")


def _resolve(args: argparse.Namespace):
    from llmstack.chat.resolve import resolve_models

    return resolve_models(args.project, args.run, args.stage, args.model, args.tokenizer)


def _stream_reply(engine, conversation: dict, args: argparse.Namespace) -> str:
    reply = engine.chat(conversation, max_tokens=args.max_tokens, temperature=args.temperature,
                        top_k=args.top_k or None, top_p=args.top_p, seed=args.seed)  # fmt: skip
    if reply.notice:
        print(f"[note: {reply.notice}]", file=sys.stderr, flush=True)
    for delta in reply:
        print(delta, end="", flush=True)
    print(flush=True)
    return reply.text


def cmd_chat(args: argparse.Namespace) -> int:
    from llmstack.chat.resolve import EnginePool, ResolveError

    try:
        if args.prompt is not None and not args.prompt.strip():
            raise ValueError("the prompt is empty: give -p some text")
        choices, label = _resolve(args)
        engine = EnginePool(choices, args.device, args.precision).get(label)
        if args.prompt is not None:
            _stream_reply(engine, {"messages": [{"role": "user", "content": args.prompt}]}, args)
            return 0
    except (ResolveError, ValueError, RuntimeError) as err:
        print(f"llmstack chat: {err}", file=sys.stderr)
        return 2
    choice = choices[label]
    where = f"run {choice.run}, " if choice.run else ""
    print(f"llmstack chat ({where}model {label}: {choice.model_path}); {HELP}")
    messages: list[dict] = []
    while True:
        try:
            text = input("\nyou> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text.strip() in ("/quit", "/exit"):
            return 0
        if text.strip() == "/clear":
            messages = []
            print("(new conversation)")
            continue
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        print("assistant> ", end="", flush=True)
        try:
            answer = _stream_reply(engine, {"messages": messages}, args)
        except KeyboardInterrupt:  # Ctrl-C stops this reply, not the chat
            print("\n(stopped)")
            messages.pop()
            continue
        except ValueError as err:
            print(f"\nllmstack chat: {err}", file=sys.stderr)
            messages.pop()
            continue
        messages.append({"role": "assistant", "content": answer})


def cmd_serve(args: argparse.Namespace) -> int:
    from llmstack.chat.resolve import EnginePool, ResolveError
    from llmstack.config import CONFIG_DIR, compose_config, one_line

    if CONFIG_DIR.is_dir():
        try:
            chat_cfg = compose_config(args.preset, args.overrides).chat
        except Exception as err:  # Hydra's own error types
            print(f"llmstack serve: invalid config: {one_line(err)}", file=sys.stderr)
            return 2
    else:  # installed without the repository's configs/: the schema's defaults
        chat_cfg = _DEFAULTS
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        choices, label = _resolve(args)
        pool = EnginePool(choices, args.device, args.precision)
        pool.get(label)  # load the default model now: a broken file fails before the server starts
    except (ResolveError, ValueError, RuntimeError) as err:
        print(f"llmstack serve: {err}", file=sys.stderr)
        return 2
    from llmstack.chat.app import ChatDefaults, launch

    defaults = ChatDefaults.from_config(chat_cfg)
    share = chat_cfg.share if args.share is None else args.share
    try:
        launch(pool, label, defaults, host=args.host or chat_cfg.host, port=args.port or chat_cfg.port,
               share=share, concurrency=args.concurrency)  # fmt: skip
    except OSError as err:  # port taken, host not local
        print(f"llmstack serve: cannot serve: {err} (choose another --port)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
