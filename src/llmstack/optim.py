"""Muon for the transformer blocks' matrices, AdamW for everything else, and the LR/momentum schedules.

    optimizers = build_optimizers(model, matrix_lr=0.02, embedding_lr=0.2, unembedding_lr=0.004)
    for step in range(total):
        ...loss.backward()...
        lrm = lr_multiplier(step, total, warmup_ratio=0.0, warmdown_ratio=0.2, final_lr_frac=0.0)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lrm
        for group in optimizers[1].param_groups:   # the Muon
            group["momentum"] = muon_momentum(step)
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)

Muon (Keller Jordan, 2024): SGD-momentum whose update is replaced by its nearest semi-orthogonal
matrix, found with a few Newton-Schulz iterations. It suits hidden 2-D weights; embeddings, the
unembedding and scalars keep AdamW.

Distributed data parallel: DDP all-reduces the gradients before step(), so every rank holds the
same gradient and computes the same Muon update; the orthogonalisation is repeated on each rank
rather than sharded. That costs a few percent of a step at these sizes and needs no extra
collective, so ranks cannot drift apart.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from llmstack.device import cpu_has_fast_bf16

# Quintic coefficients tuned for fast convergence of small singular values (Jordan et al. 2024).
# They trade exactness for speed: singular values land in roughly [0.7, 1.2] rather than at 1.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(G: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Approximate U V^T of G = U S V^T for G (m, n) or a stack (N, m, n), computed in `dtype`."""
    X = G.unsqueeze(0) if G.dim() == 2 else G
    if X.dim() != 3:
        raise ValueError(f"newton_schulz needs a matrix or a stack of matrices, got shape {tuple(G.shape)}")
    # Normalise in fp32 so the spectral norm is <= 1 before the iteration starts.
    X = X.float()
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    X = X.to(dtype)
    transposed = X.size(-2) > X.size(-1)
    if transposed:  # iterate on the wide orientation: the Gram matrix X X^T is the smaller one
        X = X.mT
    a, b, c = NS_COEFFS
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b*A + c*A@A
        X = torch.baddbmm(X, B, X, beta=a, alpha=1.0)  # a*X + B@X
    if transposed:
        X = X.mT
    return X if G.dim() == 3 else X.squeeze(0)


class Muon(torch.optim.Optimizer):
    """Momentum + orthogonalised update for 2-D parameters.

    A param group may carry `row_splits`: its matrices are orthogonalised block by block along rows
    (a fused QKV weight then gets the same update as separate Q, K and V matrices). Blocks of equal
    shape across all parameters are stacked and orthogonalised in one batched call.
    """

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        if lr < 0 or not 0.0 <= momentum < 1.0 or ns_steps < 1:
            raise ValueError(f"Muon needs lr >= 0, 0 <= momentum < 1, ns_steps >= 1; got {lr}, {momentum}, {ns_steps}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, row_splits=None)
        super().__init__(params, defaults)
        self.ns_steps = ns_steps
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-D parameters only, got shape {tuple(p.shape)}")
                if group["row_splits"] is not None and sum(group["row_splits"]) != p.size(0):
                    raise ValueError(f"row_splits {group['row_splits']} do not sum to {p.size(0)} rows")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # (shape, device) -> [(update block, parameter block, group)]
        jobs: dict[tuple, list[tuple[torch.Tensor, torch.Tensor, dict]]] = {}
        for group in self.param_groups:
            momentum = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                splits = group["row_splits"] or (p.size(0),)
                for u_block, p_block in zip(update.split(splits, 0), p.split(splits, 0), strict=True):
                    jobs.setdefault((tuple(u_block.shape), p.device), []).append((u_block, p_block, group))
        for (shape, _), items in jobs.items():
            ortho = newton_schulz(torch.stack([u for u, _, _ in items]), self.ns_steps, self.ns_dtype)
            # Keeps the update's RMS roughly shape-independent for tall matrices (public Muon recipe).
            scale = max(1.0, shape[0] / shape[1]) ** 0.5
            for o, (_, p_block, group) in zip(ortho, items, strict=True):
                if group["weight_decay"]:
                    p_block.mul_(1 - group["lr"] * group["weight_decay"])
                p_block.add_(o.to(p_block.dtype), alpha=-group["lr"] * scale)
        return loss


def _ns_dtype_for(device: torch.device) -> torch.dtype:
    """bf16 where matmuls are fast in it (CUDA with bf16, CPUs with AMX/AVX512-BF16), else fp32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return torch.float32


def build_optimizers(
    model: nn.Module,
    *,
    matrix_lr: float = 0.02,
    embedding_lr: float = 0.2,
    unembedding_lr: float = 0.004,
    scalar_lr: float | None = None,
    weight_decay: float = 0.0,
    adam_betas: tuple[float, float] = (0.8, 0.95),
) -> list[torch.optim.Optimizer]:
    """[AdamW, Muon] for a GPT: Muon takes the 2-D weights inside model.blocks; AdamW takes wte
    (embedding_lr), lm_head (unembedding_lr) and anything else (scalar_lr, default unembedding_lr).

    AdamW LRs are scaled by (n_embd / 768) ** -0.5 (nanochat: the LRs were tuned at width 768 and
    Adam's step size must shrink as the width grows). Muon's update is already normalised, so
    matrix_lr is used as given. Every group records `initial_lr` for the schedule.
    """
    block_params = {id(p) for p in model.blocks.parameters()}
    wte, lm_head = model.wte.weight, model.lm_head.weight
    qkv_splits = {id(m.c_qkv.weight): tuple(m.qkv_split) for m in model.modules() if hasattr(m, "qkv_split")}
    fused, matrices, scalars = [], [], []
    for p in model.parameters():
        if p is wte or p is lm_head:
            continue
        if id(p) in block_params and p.dim() == 2:
            (fused if id(p) in qkv_splits else matrices).append(p)
        else:
            scalars.append(p)

    width_scale = (model.config.n_embd / 768) ** -0.5
    scalar_lr = unembedding_lr if scalar_lr is None else scalar_lr
    adam_groups = [
        dict(params=[wte], lr=embedding_lr * width_scale, name="embedding"),
        dict(params=[lm_head], lr=unembedding_lr * width_scale, name="unembedding"),
    ]
    if scalars:
        adam_groups.append(dict(params=scalars, lr=scalar_lr * width_scale, name="scalar"))
    device = wte.device
    # fused AdamW runs one kernel per step instead of a dozen per tensor; CPU and CUDA both have it.
    adamw = torch.optim.AdamW(
        adam_groups,
        betas=adam_betas,
        eps=1e-10,
        weight_decay=weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    muon_groups = []
    if matrices:
        muon_groups.append(dict(params=matrices, name="matrix"))
    splits = {qkv_splits[id(p)] for p in fused}
    for split in sorted(splits):
        group_params = [p for p in fused if qkv_splits[id(p)] == split]
        muon_groups.append(dict(params=group_params, row_splits=split, name="matrix_qkv"))
    muon = Muon(muon_groups, lr=matrix_lr, weight_decay=weight_decay, ns_dtype=_ns_dtype_for(device))
    for opt in (adamw, muon):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return [adamw, muon]


def lr_multiplier(
    step: int, total_steps: int, warmup_ratio: float, warmdown_ratio: float, final_lr_frac: float
) -> float:
    """LR multiplier at `step`: linear warmup, constant, then linear warmdown to final_lr_frac."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not (0 <= warmup_ratio <= 1 and 0 <= warmdown_ratio <= 1 and warmup_ratio + warmdown_ratio <= 1):
        raise ValueError(
            f"need 0 <= warmup_ratio, warmdown_ratio and their sum <= 1; got {warmup_ratio}, {warmdown_ratio}"
        )
    warmup = round(warmup_ratio * total_steps)
    warmdown = round(warmdown_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if step < total_steps - warmdown:
        return 1.0
    progress = max(0.0, (total_steps - step) / warmdown)  # 1 at the start of warmdown, 0 at the end
    return progress + (1 - progress) * final_lr_frac


def muon_momentum(step: int, warmup_steps: int = 300, start: float = 0.85, end: float = 0.95) -> float:
    """Muon momentum ramps from 0.85 to 0.95 over the first 300 steps (nanochat/modded-nanogpt)."""
    frac = min(step / warmup_steps, 1.0)
    return (1 - frac) * start + frac * end
