"""GRPO: advantages on hand-made groups, the policy-gradient loss by hand, rows that learn only
sampled tokens, one step raising a rewarded token's log-prob, exact resume, the held-out task.

A throwaway tokenizer and a tiny random GPT (fp32, CPU) stand in for the SFT model.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import pytest
import torch

from llmstack.config import build_section
from llmstack.distributed import Dist
from llmstack.engine import Engine
from llmstack.harness import Trainer, TrainSpec
from llmstack.model import GPT, GPTConfig
from llmstack.rl import (
    Group,
    RLRecipe,
    collate,
    group_advantages,
    held_out_task,
    pass_at_k,
    policy_gradient_loss,
    sample_group,
    sample_seed,
    step_prompts,
    token_logprobs,
    training_rows,
)
from llmstack.tasks import make_task
from llmstack.tasks.base import Task
from llmstack.tokenizer import Tokenizer, train_tokenizer

CPU = Dist(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
WORDS = "cat dog sun moon red blue one two three four five big small tree river stone bird fish".split()
BASE_LRS = {"matrix_lr": 0.02, "embedding_lr": 0.2, "unembedding_lr": 0.004}


def run_rl(out: Path, cfg: dict, model, tok, task, eval_task, stop_at: int | None = None):
    """The rl stage's loop without its entry point: RLRecipe on the harness, in this process."""
    rl = build_section("rl", cfg)
    spec = TrainSpec("rl", out, rl, model, rl.num_steps, BASE_LRS, rl.lr_frac, stop_at=stop_at)
    return Trainer(spec, RLRecipe(rl, tok, task, eval_task), CPU).fit()


class WordTask(Task):
    """Prompts "Say something about <word>."; reward 1 when the reply contains `target`."""

    name = "word_task"
    eval_type = "generative"

    def __init__(self, target: str, size: int = 16, offset: int = 0) -> None:
        self.target, self.size, self.offset = target, size, offset

    def __len__(self) -> int:
        return self.size

    def get(self, index: int) -> dict:
        word = WORDS[(index + self.offset) % len(WORDS)]
        return {
            "messages": [
                {"role": "user", "content": f"Say something about {word} {index + self.offset}."},
                {"role": "assistant", "content": f"The {word} is here."},
            ]
        }

    def evaluate(self, conversation: dict, completion: str) -> float:
        return float(self.target in completion)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models here are tiny: a second thread only adds synchronisation (8x slower on a busy host)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory) -> Path:
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) + f" {i}.\n" for i in range(600)]
    return train_tokenizer(iter(docs), tmp_path_factory.mktemp("tok") / "tok.model", vocab_size=320, max_chars=10**6)


@pytest.fixture(scope="module")
def tok(tok_file) -> Tokenizer:
    return Tokenizer.load(tok_file)


@pytest.fixture(scope="module")
def model(tok) -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, seq_len=128, n_layer=2, n_embd=64, n_head=2, n_kv_head=1))
    with torch.no_grad():  # peaky enough that samples share tokens, random enough that they differ
        for p in m.parameters():
            p.normal_(0.0, 0.08)
    return m.eval()


def rl_cfg(**over) -> dict:
    cfg = {
        "task": "word_task",
        "num_steps": 3,
        "prompts_per_step": 4,
        "samples_per_prompt": 4,
        "max_new_tokens": 10,
        "temperature": 1.0,
        "top_k": 0,
        "lr_frac": 1.0,
        "eval_every": 0,
        "eval_examples": 2,
        "ckpt_every": 0,
        "keep_ckpts": 2,
        "seed": 7,
        "precision": "fp32",
    }
    return {**cfg, **over}


# ----------------------------------------------------------------------------------- advantages


def test_advantages_are_zero_mean_per_group_and_zero_for_flat_groups():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.3, 0.3, 0.3, 0.3],
                            [1.0, 0.0, 0.0, 0.0]])  # fmt: skip
    adv = group_advantages(rewards)
    assert torch.allclose(adv.sum(dim=1), torch.zeros(5), atol=1e-7)
    assert torch.equal(adv[1:4], torch.zeros(3, 4))  # exactly zero, not round-off
    assert torch.allclose(adv[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert torch.allclose(adv[4], torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_std_scaled_advantages_have_unit_spread():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 4.0, 6.0, 8.0], [5.0, 5.0, 5.0, 5.0]])
    adv = group_advantages(rewards, scale_by_std=True)
    assert torch.allclose(adv[:2].std(dim=1, unbiased=False), torch.ones(2), atol=1e-4)
    assert torch.allclose(adv[:2].mean(dim=1), torch.zeros(2), atol=1e-6)
    assert torch.equal(adv[2], torch.zeros(4))
    assert adv[0, 0] == pytest.approx(0.75 / math.sqrt(0.1875), rel=1e-4)


def test_pass_at_k_counts_groups_with_a_solved_sample():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.9, 0.0], [1.0, 1.0, 1.0]])
    assert pass_at_k(rewards) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="groups, samples"):
        group_advantages(torch.zeros(4))


# ----------------------------------------------------------------------------------------- loss


def test_policy_gradient_loss_matches_hand_computation_and_ignores_masked_tokens():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, -1.5]], requires_grad=True)
    targets = torch.tensor([[5, -1, 7], [3, 4, -1]])
    adv = torch.tensor([0.5, -0.25])
    loss = policy_gradient_loss(logprobs, targets, adv, token_count=4)
    manual = -(0.5 * (-1.0) + 0.5 * (-0.5) + (-0.25) * (-0.1) + (-0.25) * (-3.0)) / 4
    assert loss.item() == pytest.approx(manual)
    loss.backward()
    g = logprobs.grad
    assert g[0, 0] < 0 and g[0, 2] < 0  # raising a positive-advantage token's log-prob lowers the loss
    assert g[1, 0] > 0 and g[1, 1] > 0  # ... and a negative-advantage token's raises it
    assert g[0, 1] == 0 and g[1, 2] == 0  # masked tokens contribute nothing
    assert g[0, 0] == pytest.approx(-0.5 / 4)


def test_rows_learn_only_sampled_tokens(tok, model):
    group = Group(prompt=[1, 2, 3], tokens=[[10, 11, 12, 13], [20]], masks=[[1, 0, 0, 1], [1]],
                  rewards=[1.0, 0.0], replies=["", ""])  # fmt: skip
    rows = training_rows(group, [0.5, -0.5])
    assert rows[0] == ([1, 2, 3, 10, 11, 12], [-1, -1, 10, -1, -1, 13], 0.5)
    assert rows[1] == ([1, 2, 3], [-1, -1, 20], -0.5)
    inputs, targets, adv = collate(rows, pad_id=0, device=torch.device("cpu"))
    assert inputs.shape == targets.shape == (2, 6) and targets[1, 3:].eq(-1).all()
    # the loss through the model equals the per-row hand sum of advantage x log-softmax
    inputs, targets = inputs % tok.vocab_size, targets.where(targets < 0, targets % tok.vocab_size)
    lp = token_logprobs(model, inputs, targets)
    full = torch.log_softmax(model(inputs), dim=-1)
    by_hand = -(0.5 * (full[0, 2, 10] + full[0, 5, 13]) - 0.5 * full[1, 2, 20]) / 3
    assert policy_gradient_loss(lp, targets, adv, 3).item() == pytest.approx(by_hand.item(), rel=1e-5)


# -------------------------------------------------------------------------------------- prompts


def test_prompt_order_is_seeded_covers_each_epoch_and_deals_to_ranks():
    first = step_prompts(10, 4, 0, seed=3)
    assert first == step_prompts(10, 4, 0, seed=3) != step_prompts(10, 4, 0, seed=4)
    epoch = [i for s in range(5) for i in step_prompts(10, 4, s, seed=3)]  # 20 prompts = 2 epochs
    assert sorted(epoch[:10]) == list(range(10)) and sorted(epoch[10:]) == list(range(10))
    assert len({sample_seed(1, 0, slot) for slot in range(8)} | {sample_seed(1, 1, 0)}) == 9


# ---------------------------------------------------------------------------------------- loop


def target_logprob(model: GPT, groups: list[Group], target_id: int) -> float:
    """Sum of log p(target) at every position where a sample drew it."""
    total = 0.0
    with torch.no_grad():
        for g in groups:
            for tokens in g.tokens:
                seq = torch.tensor([g.prompt + tokens])
                lp = torch.log_softmax(model(seq[:, :-1]), dim=-1)[0]
                start = len(g.prompt) - 1
                total += sum(lp[start + k, target_id].item() for k, t in enumerate(tokens) if t == target_id)
    return total


def step_zero_groups(engine: Engine, task: Task, seed: int) -> list[Group]:
    """The groups of step 0 of rl_cfg(seed=seed): 4 prompts x 4 samples of 10 tokens."""
    slots = step_prompts(len(task), 4, 0, seed)
    return [sample_group(engine, task, i, 4, 10, 1.0, None, sample_seed(seed, 0, s)) for s, i in enumerate(slots)]


def test_one_step_raises_the_rewarded_tokens_log_prob(tok, model, tmp_path):
    cfg = rl_cfg(num_steps=1)
    probe = WordTask(target="\0")
    engine = Engine(model, tok, precision="fp32")
    groups = step_zero_groups(engine, probe, cfg["seed"])
    # the reward token: a plain word token that some samples drew and others did not
    counts: dict[int, int] = {}
    for g in groups:
        for tokens in g.tokens:
            for t in set(tokens):
                counts[t] = counts.get(t, 0) + 1
    candidates = [t for t, c in counts.items() if 2 <= c <= 10 and not tok.is_special(t) and tok.decode([t]).strip()]
    assert candidates, "the random model's samples share no token"
    target_id = max(candidates, key=lambda t: (counts[t], -t))
    task = WordTask(target=tok.decode([target_id]))
    groups = step_zero_groups(engine, task, cfg["seed"])  # what the loop's first step samples
    assert 0 < sum(r for g in groups for r in g.rewards) < 16
    before = target_logprob(model, groups, target_id)
    trained = copy.deepcopy(model)
    metrics = run_rl(tmp_path, cfg, trained, tok, task, WordTask(task.target, offset=100))
    assert target_logprob(trained, groups, target_id) > before + 0.1
    assert metrics["reward_first"] == pytest.approx(sum(r for g in groups for r in g.rewards) / 16)
    for key in ("reward_last", "eval/accuracy_start", "eval/accuracy", "steps"):
        assert metrics[key] is not None
    entry = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[1])
    assert set(entry) >= {"step", "rl/reward", "rl/pass@k", "rl/seq_len", "rl/loss"}
    assert (tmp_path / "model.pt").exists()


def test_reward_rises_over_a_few_steps(tok, model, tmp_path):
    # "k" is rare in the random model's samples (reward ~0.02 at first): GRPO must find and reinforce it.
    cfg = rl_cfg(num_steps=12, prompts_per_step=8, samples_per_prompt=8, lr_frac=0.3, eval_examples=16, top_k=50)
    task, held_out = WordTask("k", size=64), WordTask("k", size=64, offset=100)
    metrics = run_rl(tmp_path, cfg, copy.deepcopy(model), tok, task, held_out)
    assert metrics["reward_first"] < 0.1 and metrics["reward_last"] > metrics["reward_first"] + 0.2
    assert metrics["eval/accuracy"] > metrics["eval/accuracy_start"]


def test_resume_after_a_stop_gives_identical_weights(tok, model, tmp_path):
    task = WordTask(target="o")
    cfg = rl_cfg(num_steps=4, ckpt_every=3)

    def run(out: Path, stop_at: int | None = None):
        return run_rl(out, cfg, copy.deepcopy(model), tok, task, WordTask("o", offset=50), stop_at)

    straight = run(tmp_path / "straight")
    assert run(tmp_path / "resumed", stop_at=2) is None
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert sorted(p.name for p in (tmp_path / "resumed" / "ckpt").iterdir()) == ["step_000002.pt"]
    resumed = run(tmp_path / "resumed")
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["model"]
    assert any(not torch.equal(a[k], model.state_dict()[k]) for k in a)  # training moved the weights
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in steps if "rl/reward" in e] == [0, 1, 2, 3]
    assert straight["reward_last"] == resumed["reward_last"]


def test_held_out_task_uses_the_test_split():
    held = held_out_task("toy_arithmetic", {"split": "train", "seed": 2, "size": 500, "n_entities": 16}, 8)
    train = make_task("toy_arithmetic", split="train", seed=2, size=8, n_entities=16)
    assert len(held) == 8
    assert [c["messages"][0]["content"] for c in held] != [c["messages"][0]["content"] for c in train]


def test_stage_writes_declared_outputs_and_a_summary(tok_file, model, tmp_path, monkeypatch, capsys):
    from llmstack.checkpoint import save_model
    from llmstack.stages import rl as rl_stage
    from llmstack.stages.common import stage_main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # distributed.init sizes the thread pool from it
    recorded = {"matrix_lr": 0.123, "embedding_lr": 0.2, "unembedding_lr": 0.004}  # the SFT model's
    save_model(tmp_path / "sft.pt", model, {"stage": "sft", "step": 5, "base_lrs": recorded})
    section = rl_cfg(
        task="toy_arithmetic", num_steps=2, prompts_per_step=2, samples_per_prompt=2, max_new_tokens=6, ckpt_every=1,
        lr_frac=0.5,
    )  # fmt: skip
    section["task_kwargs"] = {"split": "train", "size": 20, "n_entities": 16}
    out = tmp_path / "rl"
    execution = json.dumps({"rl": {"device": "cpu", "keep_ckpts_after": 1}})  # keep a step file to inspect
    argv = [str(out), "--config", json.dumps({"rl": section, "inputs": {}}), "--execution", execution,
            "--input", f"model={tmp_path / 'sft.pt'}", "--input", f"tokenizer={tok_file}"]  # fmt: skip
    stage_main("rl", rl_stage.run, argv)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["task"] == "toy_arithmetic" and metrics["from"]["stage"] == "sft"
    rl_meta = torch.load(out / "model.pt", weights_only=True)["meta"]
    assert rl_meta["stage"] == "rl" and rl_meta["base_lrs"] == recorded  # inherited, passed on
    ckpt = torch.load(out / "ckpt" / "step_000001.pt", weights_only=False)
    muon = [g for g in ckpt["optimizers"][1]["param_groups"] if g["name"].startswith("matrix")]
    assert muon and all(g["initial_lr"] == pytest.approx(0.123 * 0.5) for g in muon)  # the SFT model's LR
    assert (out / "config.yaml").exists()
    assert "[rl] reward 0.000 -> 0.000, eval accuracy 0.000 -> 0.000" in capsys.readouterr().out
