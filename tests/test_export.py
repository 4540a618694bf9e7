"""Hugging Face export: the folder loads in transformers from itself alone (offline, remote code),
generates the engine's greedy tokens, gives its logits, and its chat template gives our renderer's ids.
Also the `export` rule in a dry run, with the real Snakefile plus export.smk."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# transformers reads these when it is imported: never reach the network from this module.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from llmstack.checkpoint import load_model, save_model  # noqa: E402
from llmstack.engine import Engine  # noqa: E402
from llmstack.export.cli import main as export_main  # noqa: E402
from llmstack.model import GPT, GPTConfig  # noqa: E402
from llmstack.tokenizer import Tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STAGES = ["data", "tokenizer", "pretrain", "base_eval", "midtrain", "eval/midtrain", "sft", "eval/sft"]

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "Where does Lamosai live?"}]},
    {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 12*7?"}]},
    {"messages": [
        {"role": "user", "content": "Hello there, Café 東京!"},
        {"role": "assistant", "content": "Hi. How can I help?"},
        {"role": "user", "content": "Count the letters in 'apple'.\n  Please."},
    ]},
    {"messages": [
        {"role": "user", "content": "What is 3+4?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me compute. "},
            {"type": "python", "text": "3+4"},
            {"type": "python_output", "text": "7"},
            {"type": "text", "text": "It is 7."},
        ]},
        {"role": "user", "content": "And twice?"},
    ]},
]  # fmt: skip


def fake_run(root: Path, tokenizer_file: Path) -> Path:
    """A project folder as the workflow leaves it, with a random sft model and meta.json files."""
    stages = {name: f"artifacts/{name.split('/')[0]}/{i:010x}" for i, name in enumerate(STAGES)}
    tok_dir = root / stages["tokenizer"]
    tok_dir.mkdir(parents=True)
    (tok_dir / "tokenizer.model").write_bytes(tokenizer_file.read_bytes())
    vocab = Tokenizer.load(tok_dir / "tokenizer.model").vocab_size
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, seq_len=128, n_layer=2, n_embd=64, n_head=2, n_kv_head=1))
    with torch.no_grad():  # large random weights, so greedy decoding does not just repeat one token
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    save_model(root / stages["sft"] / "model.pt", model, {"stage": "sft", "step": 7, "git": "abc1234"})
    for name, folder in stages.items():
        metrics = {"steps": 7, "val/bpb": 1.25} if name in ("pretrain", "sft") else {"accuracy": 0.5}
        meta = {"stage": name, "seconds": 1.5, "device": "1xcpu", "metrics": metrics,
                "config": {"data": {"source": "embedded"}} if name == "data" else {}}  # fmt: skip
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "meta.json").write_text(json.dumps(meta))
    (root / "runs" / "tiny").mkdir(parents=True)
    (root / "runs" / "tiny" / "run.json").write_text(json.dumps({"run": "tiny", "stages": stages}))
    return root / stages["sft"] / "model.pt"


@pytest.fixture(scope="module")
def exported(tiny_corpus, tmp_path_factory):
    """(export folder, llmstack model, llmstack tokenizer, hf model, hf tokenizer)."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("project")
    model_path = fake_run(root, tiny_corpus / "tok.model")
    out = root / "hf" / "tiny-sft"
    assert export_main([str(out), "--root", str(root), "--run", "tiny", "--stage", "sft"]) == 0
    model, _ = load_model(model_path)
    tokenizer = Tokenizer.load(tiny_corpus / "tok.model")
    kwargs = {"trust_remote_code": True, "local_files_only": True}
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, **kwargs).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out, **kwargs)
    return out, model, tokenizer, hf_model, hf_tok


def chat_ids(hf_tok, messages, **kwargs) -> list[int]:
    ids = hf_tok.apply_chat_template(messages, tokenize=True, **kwargs)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_folder_holds_a_complete_model(exported):
    out, model, tokenizer, _, _ = exported
    names = {p.name for p in out.iterdir()}
    assert names == {
        "config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json", "generation_config.json",
        "README.md", "configuration_llmstack.py", "modeling_llmstack.py", "tokenization_llmstack.py",
    }  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_key_value_heads"]) == (2, 64, 1)
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"][0] == tokenizer.special_id("<|assistant_end|>")
    card = (out / "README.md").read_text()
    assert "artifacts/sft/" in card and "step 7" in card and "eval/sft" in card and "accuracy 0.5" in card
    assert '`data`: `{"source": "embedded"}`' in card
    assert (out / "tokenizer.model").read_bytes() == tokenizer._proto  # the run's own tokenizer


def test_greedy_tokens_and_logits_match_the_engine(exported):
    _, model, tokenizer, hf_model, _ = exported
    engine = Engine(model, tokenizer, precision="fp32")
    prompts = [tokenizer.render_for_completion(c) for c in CONVERSATIONS[:3]]
    prompts += [[tokenizer.bos_id, *tokenizer.encode(t)] for t in ("The river city", "Once upon a time, 42")]
    for ids in prompts:
        ours = engine.generate_batch(ids, max_tokens=16, temperature=0)[0][0]
        out = hf_model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
        assert out[0, len(ids) :].tolist() == ours
        full = torch.tensor([ids + ours])
        with torch.no_grad():
            torch.testing.assert_close(hf_model(full).logits, model(full), atol=1e-4, rtol=1e-4)


def test_left_padded_batch_gives_each_prompt_its_own_logits(exported):
    _, model, tokenizer, hf_model, _ = exported
    a = tokenizer.render_for_completion(CONVERSATIONS[0])
    b = a[:5]
    pad = tokenizer.special_id("<|assistant_end|>")
    ids = torch.tensor([a, [pad] * (len(a) - len(b)) + b])
    mask = torch.tensor([[1] * len(a), [0] * (len(a) - len(b)) + [1] * len(b)])
    with torch.no_grad():
        logits = hf_model(ids, attention_mask=mask).logits
        torch.testing.assert_close(logits[0], model(torch.tensor([a]))[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(logits[1, -len(b) :], model(torch.tensor([b]))[0], atol=1e-4, rtol=1e-4)


def test_chat_template_renders_like_our_tokenizer(exported):
    _, _, tokenizer, _, hf_tok = exported
    for conv in CONVERSATIONS:
        prompt = conv["messages"] if conv["messages"][-1]["role"] == "user" else conv["messages"][:-1]
        assert chat_ids(hf_tok, prompt, add_generation_prompt=True) == tokenizer.render_for_completion(conv)
        whole = [*conv["messages"], {"role": "assistant", "content": "Done."}]
        assert chat_ids(hf_tok, whole) == tokenizer.render_conversation({"messages": whole})[0]
    text = "Hello, Café 東京 <|bos|>!\n 12*7"  # a special string in plain text stays text in our encode
    assert hf_tok(text, split_special_tokens=True)["input_ids"] == [tokenizer.bos_id, *tokenizer.encode(text)]
    ids = tokenizer.render_for_completion(CONVERSATIONS[2])
    assert hf_tok.decode(ids) == tokenizer.decode(ids)
    # The known difference: a chat template is a string, so special strings typed into a message
    # become special tokens there, while our renderer keeps them as text.
    typed = [{"role": "user", "content": "a <|user_end|> b"}]
    assert chat_ids(hf_tok, typed).count(tokenizer.special_id("<|user_end|>")) == 2


LOAD_ALONE = """
import sys
sys.modules["llmstack"] = None  # the folder must not need llmstack
import torch, transformers
path = sys.argv[1]
tok = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=True, local_files_only=True)
model = transformers.AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, local_files_only=True)
ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_dict=True,
                              return_tensors="pt")
out = model.generate(**ids, max_new_tokens=4, do_sample=False)
print(out[0].tolist())
"""


def test_folder_loads_without_llmstack_or_network(exported, tmp_path):
    out, model, tokenizer, _, _ = exported
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    res = subprocess.run([sys.executable, "-c", LOAD_ALONE, str(out)], capture_output=True, text=True, env=env,
                         cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    ids = tokenizer.render_for_completion({"messages": [{"role": "user", "content": "Hi"}]})
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(got) > len(ids) and got == model.generate_greedy(torch.tensor([ids]), 4)[0].tolist()[: len(got)]


def test_export_refuses_a_foreign_folder_and_replaces_its_own(exported, tmp_path, capsys):
    out, *_ = exported
    root = out.parent.parent
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert export_main([str(foreign), "--root", str(root), "--stage", "sft"]) == 2
    assert "not an llmstack export" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"
    again = tmp_path / "again"
    assert export_main([str(again), "--root", str(root), "--stage", "sft", "--dtype", "bfloat16"]) == 0
    assert export_main([str(again), "--root", str(root), "--stage", "sft", "--dtype", "bfloat16"]) == 0
    assert json.loads((again / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert export_main([str(tmp_path / "x"), "--root", str(root), "--stage", "rl"]) == 2  # no rl model


def test_export_rule_dry_run(tmp_path):
    """The real Snakefile: `export` is planned on demand, never by default."""
    snakefile = str(REPO / "Snakefile")

    def dry_run(*targets: str) -> str:
        cmd = [sys.executable, "-m", "snakemake", "-s", snakefile, "-d", str(tmp_path), "-n", "--cores", "1"]
        res = subprocess.run([*cmd, *targets], capture_output=True, text=True, cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        return res.stdout

    assert not re.search(r"^rule export:", dry_run(), re.M)
    lint = subprocess.run([sys.executable, "-m", "snakemake", "-s", snakefile, "-d", str(tmp_path), "--lint"],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert "export.smk:" not in lint.stdout + lint.stderr
    plan = dry_run("export")
    assert re.search(r"^rule export:", plan, re.M) and "runs/tiny/export/rl" in plan
    export_job = plan[plan.index("rule export:") :].split("\n\n")[0]
    assert "/tokenizer.model" in export_job and "artifacts/rl/" in export_job
    assert re.search(r"^rule eval:", plan, re.M)  # the card's figures are made first
