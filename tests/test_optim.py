"""Muon + AdamW: orthogonalisation, parameter grouping, schedules, exact resume from state_dicts."""

from __future__ import annotations

import io

import pytest
import torch

from llmstack.model import GPT, GPTConfig
from llmstack.optim import Muon, build_optimizers, lr_multiplier, muon_momentum, newton_schulz


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP spin-waits stall badly on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_gpt(seed: int = 0, n_kv_head: int = 2) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=50, seq_len=12, n_layer=2, n_embd=32, n_head=4, n_kv_head=n_kv_head))


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, 50, (3, 13), generator=torch.Generator().manual_seed(seed))
    return idx[:, :-1], idx[:, 1:]


def train_steps(model: GPT, optimizers: list[torch.optim.Optimizer], seeds: range) -> None:
    for seed in seeds:
        x, y = batch(seed)
        model(x, y).backward()
        for group in optimizers[1].param_groups:
            group["momentum"] = muon_momentum(seed)
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)


# --- Newton-Schulz -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (4, 48, 80)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_is_near_orthogonal(shape, dtype):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    X = newton_schulz(G, steps=5, dtype=dtype)
    assert X.shape == G.shape and X.dtype == dtype
    s = torch.linalg.svdvals(X.float())
    # The quintic's coefficients trade exactness for speed: values land in about [0.68, 1.14].
    assert s.min() > 0.6 and s.max() < 1.25, (s.min().item(), s.max().item())
    # ...and it keeps the singular vectors: X is close to the exact U V^T.
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    cos = (X.float() * (U @ Vh)).sum(dim=(-2, -1)) / (X.float().norm(dim=(-2, -1)) * (U @ Vh).norm(dim=(-2, -1)))
    assert torch.all(cos > 0.95)


def test_newton_schulz_rejects_vectors():
    with pytest.raises(ValueError, match="matrix"):
        newton_schulz(torch.randn(8))


# --- parameter grouping -------------------------------------------------------------------------


def test_every_parameter_in_exactly_one_group():
    model = tiny_gpt()
    adamw, muon = build_optimizers(model)
    seen = [id(p) for opt in (adamw, muon) for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    assert len(seen) == len(set(seen))
    muon_params = [p for g in muon.param_groups for p in g["params"]]
    assert all(p.dim() == 2 for p in muon_params)
    assert {id(p) for p in muon_params} == {id(p) for p in model.blocks.parameters()}
    names = {g["name"]: g for g in adamw.param_groups}
    assert names["embedding"]["params"] == [model.wte.weight]
    assert names["unembedding"]["params"] == [model.lm_head.weight]


def test_learning_rates_scale_with_width_and_record_initial_lr():
    model = tiny_gpt()
    adamw, muon = build_optimizers(model, matrix_lr=0.03, embedding_lr=0.2, unembedding_lr=0.004)
    scale = (32 / 768) ** -0.5
    lrs = {g["name"]: g["lr"] for g in adamw.param_groups}
    assert lrs["embedding"] == pytest.approx(0.2 * scale)
    assert lrs["unembedding"] == pytest.approx(0.004 * scale)
    assert all(g["lr"] == 0.03 for g in muon.param_groups)
    for g in adamw.param_groups + muon.param_groups:
        assert g["initial_lr"] == g["lr"]
    assert adamw.defaults["betas"] == (0.8, 0.95) and adamw.defaults["eps"] == 1e-10
    assert adamw.defaults["weight_decay"] == 0.0


def test_fused_qkv_is_orthogonalised_per_block():
    """A fused (q; k; v) weight must get the same update as three separate matrices."""
    torch.manual_seed(0)
    fused = torch.nn.Parameter(torch.randn(64, 32))  # q 32 rows, k 16, v 16
    parts = [torch.nn.Parameter(t.clone()) for t in fused.detach().split((32, 16, 16))]
    grad = torch.randn(64, 32)
    fused.grad = grad.clone()
    for p, g in zip(parts, grad.split((32, 16, 16)), strict=True):
        p.grad = g.clone()
    Muon([dict(params=[fused], row_splits=(32, 16, 16))], lr=0.1, ns_dtype=torch.float32).step()
    Muon(parts, lr=0.1, ns_dtype=torch.float32).step()
    torch.testing.assert_close(fused.detach(), torch.cat([p.detach() for p in parts]), atol=1e-5, rtol=1e-5)


def test_muon_update_scale_for_tall_matrices():
    """Tall (rows > cols) updates are scaled by sqrt(rows / cols); wide ones are not."""
    for rows, cols in ((64, 16), (16, 64)):
        p = torch.nn.Parameter(torch.zeros(rows, cols))
        p.grad = torch.randn(rows, cols, generator=torch.Generator().manual_seed(1))
        Muon([p], lr=1.0, momentum=0.0, nesterov=False, ns_dtype=torch.float32).step()
        rms = p.detach().pow(2).mean().sqrt().item()
        # an orthogonal update has RMS sqrt(1 / max(rows, cols)); NS lands within its ~0.7-1.2 band
        want = max(1.0, rows / cols) ** 0.5 * min(rows, cols) ** 0.5 / (rows * cols) ** 0.5
        assert 0.6 * want < rms < 1.25 * want


def test_muon_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(4))])


# --- schedules -----------------------------------------------------------------------------------


def test_lr_multiplier_shape():
    total = 100
    lrm = [lr_multiplier(s, total, warmup_ratio=0.1, warmdown_ratio=0.4, final_lr_frac=0.1) for s in range(total)]
    assert lrm[0] == pytest.approx(0.1) and lrm[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrm[:9], lrm[1:10], strict=True))  # warmup rises
    assert all(v == 1.0 for v in lrm[10:60])  # constant
    assert lrm[60] == pytest.approx(1.0)
    assert lrm[80] == pytest.approx(0.5 + 0.5 * 0.1)  # halfway down the linear warmdown
    assert all(a > b for a, b in zip(lrm[60:], lrm[61:], strict=False))  # warmdown falls
    assert lr_multiplier(total, total, 0.1, 0.4, 0.1) == pytest.approx(0.1)  # ends at final_lr_frac
    assert lr_multiplier(5, 10, 0.0, 0.0, 0.0) == 1.0
    with pytest.raises(ValueError):
        lr_multiplier(0, 10, 0.7, 0.5, 0.0)


def test_muon_momentum_warmup():
    assert muon_momentum(0) == pytest.approx(0.85)
    assert muon_momentum(150) == pytest.approx(0.90)
    assert muon_momentum(300) == pytest.approx(0.95)
    assert muon_momentum(10_000) == pytest.approx(0.95)


# --- exact resume --------------------------------------------------------------------------------


def test_state_dict_round_trip_continues_bit_identically():
    model = tiny_gpt()
    optimizers = build_optimizers(model)
    train_steps(model, optimizers, range(0, 3))

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": [o.state_dict() for o in optimizers]}, buffer)
    train_steps(model, optimizers, range(3, 6))

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = tiny_gpt(seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    resumed_optimizers = build_optimizers(resumed)
    for opt, state in zip(resumed_optimizers, saved["optim"], strict=True):
        opt.load_state_dict(state)
    assert resumed_optimizers[1].param_groups[1]["row_splits"] == optimizers[1].param_groups[1]["row_splits"]
    train_steps(resumed, resumed_optimizers, range(3, 6))

    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
