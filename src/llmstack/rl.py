"""GRPO-style reinforcement learning on verifiable rewards: rollouts, advantages, loss, the loop.

    python -m llmstack.launch rl artifacts/rl/<key> --config JSON \
        --input model=artifacts/sft/<key>/model.pt --input tokenizer=artifacts/tokenizer/<key>/tokenizer.model

One step: the `prompts_per_step` prompts of the step (a seeded shuffle of the task, epoch after
epoch) are dealt to the ranks (rank r takes prompts r, r+W, ...); each prompt gets a group of
`samples_per_prompt` completions from the engine; `task.evaluate` rewards each; a sample's
advantage is its reward minus its group's mean; the loss is -advantage x log-prob summed over the
sampled tokens (not the prompt, not tool output the engine forced in) and divided by the step's
token count over all ranks; gradients are summed over ranks; one optimizer step.

Choices, as in nanochat's chat_rl (a simplification of GRPO, Shao et al. 2024):
- no division by the group's reward std: with 0/1 rewards it inflates groups with one lucky or one
  unlucky sample, a question-difficulty bias (Dr. GRPO, Liu et al. 2025); `scale_by_std` turns it on;
- on-policy (one update per batch of samples), so no importance ratio, clipping or KL term;
- token-level normalisation over the whole step (DAPO, Yu et al. 2025): each sampled token weighs
  the same, whatever the split into ranks and micro-batches.
Each prompt's sampling seed derives from (seed, step, prompt slot), never from the rank, so a resumed
run (or one on another number of processes) samples the same completions.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

from llmstack.config import RLConfig
from llmstack.device import autocast_context
from llmstack.distributed import Dist, all_reduce_sum
from llmstack.engine import Engine
from llmstack.evaluate.chat_eval import reply_text
from llmstack.harness import Recipe, Trainer
from llmstack.model import GPT
from llmstack.tasks import make_task, task_options
from llmstack.tasks.base import Task
from llmstack.tokenizer import Tokenizer

LAST_STEPS = 5  # reward_last in metrics.json: the mean reward over this many final steps
SOLVED = 1.0 - 1e-9  # a reward counts as a solve for pass@k at 1 (allowing float round-off)

# ------------------------------------------------------------------------------------ prompts


@functools.lru_cache(maxsize=8)
def _permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(f"rl-order-{seed}-{epoch}").shuffle(order)
    return tuple(order)


def step_prompts(n_items: int, prompts_per_step: int, step: int, seed: int) -> list[int]:
    """Task indices of the prompts of `step`: a stream of seeded permutations of the task, one per epoch."""
    if n_items < 1:
        raise ValueError("the RL task has no examples")
    out = []
    for k in range(step * prompts_per_step, (step + 1) * prompts_per_step):
        epoch, pos = divmod(k, n_items)
        out.append(_permutation(n_items, seed, epoch)[pos])
    return out


def sample_seed(seed: int, step: int, slot: int) -> int:
    """The engine seed of prompt `slot` of `step`: independent of rank and world size."""
    digest = hashlib.sha256(f"rl-sample-{seed}-{step}-{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # < 2**63: fits manual_seed


# ----------------------------------------------------------------------------------- rollouts


@dataclass
class Group:
    """The samples of one prompt: completion tokens, their masks (0 = forced tool output) and rewards."""

    prompt: list[int]  # as the engine saw it (fitted to the context)
    tokens: list[list[int]]
    masks: list[list[int]]
    rewards: list[float]
    replies: list[str]


def sample_group(
    engine: Engine,
    task: Task,
    index: int,
    num_samples: int,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
) -> Group:
    """Complete prompt `index` of `task` `num_samples` times and reward every completion."""
    tok = engine.tokenizer
    conv = task[index]
    prompt = engine.fit_prompt(tok.render_for_completion(conv), max_new_tokens).ids
    tokens, masks = engine.generate_batch(
        prompt, num_samples, max_new_tokens, temperature=temperature, top_k=top_k or None, seed=seed
    )
    replies = [reply_text(tok, t) for t in tokens]
    rewards = [float(task.evaluate(conv, r)) for r in replies]
    return Group(prompt, tokens, masks, rewards, replies)


def group_advantages(rewards: torch.Tensor, scale_by_std: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """Advantages (G, S) of rewards (G, S) for G groups of S samples: reward minus its group's mean
    (divided by the group's std when `scale_by_std`). A group of equal rewards gets exactly 0."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (groups, samples), got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    adv = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_by_std:
        adv = adv / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps)
    flat = rewards.amax(dim=1, keepdim=True) == rewards.amin(dim=1, keepdim=True)
    return adv.masked_fill(flat, 0.0)


def pass_at_k(rewards: torch.Tensor) -> float:
    """Fraction of groups (rows of rewards (G, S)) with at least one sample of reward 1."""
    if rewards.numel() == 0:
        return 0.0
    return (rewards.amax(dim=1) >= SOLVED).float().mean().item()


def training_rows(group: Group, advantages: list[float]) -> list[tuple[list[int], list[int], float]]:
    """(inputs, targets, advantage) per sample: the sequence prompt + completion shifted by one,
    targets -1 on the prompt and on forced tool output, so only sampled tokens are learned."""
    rows = []
    n = len(group.prompt)
    for tokens, masks, adv in zip(group.tokens, group.masks, advantages, strict=True):
        seq = group.prompt + tokens
        targets = [-1] * (n - 1) + [t if m else -1 for t, m in zip(tokens, masks, strict=True)]
        rows.append((seq[:-1], targets, adv))
    return rows


def collate(
    rows: list[tuple[list[int], list[int], float]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded inputs (B, T), targets (B, T) (-1 on padding) and advantages (B,)."""
    width = max(len(x) for x, _, _ in rows)
    inputs = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, (x, y, _) in enumerate(rows):
        inputs[i, : len(x)] = torch.tensor(x)
        targets[i, : len(y)] = torch.tensor(y)
    adv = torch.tensor([a for _, _, a in rows], dtype=torch.float32)
    return inputs.to(device), targets.to(device), adv.to(device)


# --------------------------------------------------------------------------------------- loss


def token_logprobs(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every position (B, T); 0 where the target is -1."""
    return -model(inputs, targets, loss_reduction="none")


def policy_gradient_loss(
    logprobs: torch.Tensor, targets: torch.Tensor, advantages: torch.Tensor, token_count: int | float
) -> torch.Tensor:
    """-sum(advantage x log-prob) over learned tokens (targets >= 0), divided by `token_count`
    (the step's learned tokens over all ranks and micro-batches)."""
    learned = (targets >= 0).to(logprobs.dtype)
    return -(advantages[:, None].to(logprobs.dtype) * logprobs * learned).sum() / max(token_count, 1)


# --------------------------------------------------------------------------------- evaluation


def held_out_task(name: str, kwargs: dict[str, Any], examples: int) -> Task:
    """The RL task's held-out twin: split "test" when the task has splits, else a different seed."""
    options = task_options(name)
    held = dict(kwargs)
    if "split" in options:
        held["split"] = "test"
    elif "seed" in options:
        held["seed"] = int(kwargs.get("seed", 0)) + 1_000_003
    else:
        raise ValueError(f"rl: task {name!r} has neither a split nor a seed option, so it has no held-out examples")
    if "size" in options:
        held["size"] = examples
    return make_task(name, **held)


@torch.no_grad()
def held_out_accuracy(
    engine: Engine, task: Task, n: int, max_new_tokens: int, d: Dist
) -> tuple[float, list[dict[str, Any]]]:
    """Mean reward of greedy replies to the first `n` examples (dealt over the ranks), and a few
    (prompt, reply, reward) examples from this rank."""
    tok = engine.tokenizer
    n = min(n, len(task))
    total, examples = 0.0, []
    for i in range(d.rank, n, d.world_size):
        conv = task[i]
        tokens, _ = engine.generate_batch(tok.render_for_completion(conv), 1, max_new_tokens, temperature=0.0)
        reply = reply_text(tok, tokens[0])
        score = float(task.evaluate(conv, reply))
        total += score
        if len(examples) < 3:
            examples.append({"prompt": conv["messages"][-2]["content"], "reply": reply, "reward": score})
    total_t = all_reduce_sum(torch.tensor([total], dtype=torch.float64, device=engine.device))
    return total_t.item() / max(n, 1), examples


# --------------------------------------------------------------------------------------- loop


def _sum_gradients(model: torch.nn.Module, d: Dist) -> None:
    """Give every parameter a gradient (zeros where none flowed) and sum them over ranks in one call.

    Each rank's loss is already divided by the step's global token count, so the sum is the step's
    gradient. A hand-rolled all-reduce instead of DDP: ranks may hold different numbers of prompts
    or skip the forward entirely (all their groups flat), which DDP's bucketed hooks cannot handle."""
    params = list(model.parameters())
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if d.world_size > 1:
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
            offset += p.numel()


def accumulate_policy_gradient(
    model: GPT,
    groups: list[Group],
    advantages: torch.Tensor,
    micro: int,
    pad_id: int,
    dtype: torch.dtype | None,
    d: Dist,
) -> tuple[float, float]:
    """Backward the policy-gradient loss of this rank's groups in micro-batches of `micro` rows,
    then sum gradients over ranks. Returns (the step's loss over all ranks, its learned-token count).

    Rows with zero advantage (every sample of a flat group) add nothing to loss or gradient, so
    they are skipped; their tokens still count in the normaliser, as every sampled token does."""
    device = d.device
    rows = [r for g, a in zip(groups, advantages.tolist(), strict=True) for r in training_rows(g, a)]
    learned = sum(sum(1 for y in targets if y >= 0) for _, targets, _ in rows)
    token_count = all_reduce_sum(torch.tensor([float(learned)], device=device)).item()
    active = [r for r in rows if r[2] != 0.0]
    loss_sum = 0.0
    for i in range(0, len(active), micro):
        inputs, targets, adv = collate(active[i : i + micro], pad_id, device)
        with autocast_context(device, dtype):
            logprobs = token_logprobs(model, inputs, targets)
        loss = policy_gradient_loss(logprobs, targets, adv, token_count)
        loss.backward()
        loss_sum += loss.item()
    _sum_gradients(model, d)
    total = all_reduce_sum(torch.tensor([loss_sum], dtype=torch.float64, device=device)).item()
    return total, token_count


def step_metrics(groups: list[Group], rewards: torch.Tensor, loss: float, d: Dist) -> dict[str, float]:
    """Mean reward, pass@k (k = group size), mean completion length over all ranks; the loss as given."""
    lengths = sum(len(t) for g in groups for t in g.tokens)
    solved = int((rewards.amax(dim=1) >= SOLVED).sum()) if len(groups) else 0
    sums = all_reduce_sum(
        torch.tensor([rewards.sum().item(), rewards.numel(), solved, len(groups), lengths], dtype=torch.float64,
                     device=d.device)
    ).tolist()  # fmt: skip
    r_sum, n_samples, n_solved, n_groups, len_sum = sums
    return {
        "rl/reward": r_sum / n_samples,
        "rl/pass@k": n_solved / n_groups,
        "rl/seq_len": len_sum / n_samples,
        "rl/loss": loss,
    }


class RLRecipe(Recipe):
    """GRPO's step on the harness: rollouts, group advantages, policy gradient; held-out accuracy."""

    def __init__(self, cfg: RLConfig, tokenizer: Tokenizer, task: Task, eval_task: Task, scale_by_std: bool = False):
        if min(cfg.prompts_per_step, cfg.samples_per_prompt, cfg.num_steps, cfg.max_new_tokens) < 1:
            raise ValueError("rl: num_steps, prompts_per_step, samples_per_prompt and max_new_tokens must be >= 1")
        self.cfg, self.tok, self.task, self.eval_task = cfg, tokenizer, task, eval_task
        self.scale_by_std = scale_by_std
        self.samples_per_step = cfg.prompts_per_step * cfg.samples_per_prompt

    def setup(self, t: Trainer) -> None:
        self.t = t
        self.engine = Engine(t.model, self.tok, precision=self.cfg.precision)
        self.micro = self.cfg.device_batch_size or self.cfg.samples_per_prompt
        self.pad_id = self.tok.special_id("<|assistant_end|>")
        c = self.cfg
        t.print(
            f"task {self.task.name} ({len(self.task)} prompts); "
            f"{c.prompts_per_step} prompts x {c.samples_per_prompt} samples a step"
        )

    def lr_multiplier(self, step: int, total: int) -> float:
        return 1.0 - step / total  # linear decay to zero, as nanochat's chat_rl

    def evaluate(self, step: int) -> dict[str, Any]:
        t, c = self.t, self.cfg
        t.model.eval()
        acc, examples = held_out_accuracy(self.engine, self.eval_task, c.eval_examples, c.max_new_tokens, t.d)
        return {"step": step, "eval/accuracy": acc, **({"eval/examples": examples} if t.d.is_main else {})}

    def train_step(self, step: int) -> dict[str, Any]:
        t, c, d = self.t, self.cfg, self.t.d
        S = c.samples_per_prompt
        # 1. rollouts: this rank's prompts of the step, a group of samples each
        t.model.eval()
        indices = step_prompts(len(self.task), c.prompts_per_step, step, c.seed)
        groups = [
            sample_group(
                self.engine, self.task, indices[slot], S, c.max_new_tokens, c.temperature, c.top_k or None,
                sample_seed(c.seed, step, slot),
            )
            for slot in range(d.rank, c.prompts_per_step, d.world_size)
        ]  # fmt: skip
        rewards = torch.tensor([g.rewards for g in groups], dtype=torch.float32).reshape(len(groups), S)
        advantages = group_advantages(rewards, self.scale_by_std)
        # 2. policy gradient over all ranks; the harness steps the optimizers
        t.model.train()
        loss, token_count = accumulate_policy_gradient(t.model, groups, advantages, self.micro, self.pad_id, t.dtype, d)
        return {**step_metrics(groups, rewards, loss, d), "rl/tokens": token_count}

    def progress(self, entry: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, str]:
        out = {
            "reward": f"{entry['rl/reward']:.3f}",
            "pass_k": f"{entry['rl/pass@k']:.2f}",
            "len": f"{entry['rl/seq_len']:.0f}",
        }
        if "eval/accuracy" in last_eval:
            out["eval"] = f"{last_eval['eval/accuracy']:.3f}"
        return out

    def summary(self, history: list[dict[str, Any]], final_eval: dict[str, Any]) -> dict[str, Any]:
        rewards = [e["rl/reward"] for e in history if "rl/reward" in e]
        accs = [e for e in history if "eval/accuracy" in e]
        tail = rewards[-LAST_STEPS:]
        return {
            "task": self.task.name,
            "reward_first": rewards[0] if rewards else None,
            "reward_last": sum(tail) / len(tail) if tail else None,
            "pass@k_last": next((e["rl/pass@k"] for e in reversed(history) if "rl/pass@k" in e), None),
            "eval/accuracy_start": accs[0]["eval/accuracy"] if accs else None,
            "eval/accuracy": final_eval["eval/accuracy"],
            "eval/examples": final_eval.get("eval/examples", []),
            "samples_per_step": self.samples_per_step,
        }
