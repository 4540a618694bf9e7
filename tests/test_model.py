"""GPT model: causality, KV-cache equivalence, init loss, overfitting, sizes; plus device selection."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from llmstack import device as dev
from llmstack.model import (
    GPT,
    GPTConfig,
    KVCache,
    apply_rotary,
    causal_attention,
    dims_from_depth,
    rms_norm,
    softcap_logits,
)
from llmstack.optim import build_optimizers

VOCAB, SEQ = 97, 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP spin-waits stall badly on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(n_head: int = 4, n_kv_head: int = 4, seed: int = 0, randomize: bool = True) -> GPT:
    """A tiny fp32 GPT. randomize=True replaces the zero-init projections with random weights so
    attention actually mixes positions (otherwise causality and cache tests would pass vacuously)."""
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=VOCAB, seq_len=SEQ, n_layer=2, n_embd=32, n_head=n_head, n_kv_head=n_kv_head)
    model = GPT(cfg).eval()
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                if p is not model.wte.weight:
                    p.normal_(0.0, p.size(-1) ** -0.5)
    return model


def tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


# --- architecture ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_changing_a_later_token_never_changes_earlier_logits(n_kv_head):
    model = make_model(n_kv_head=n_kv_head)
    idx = tokens(2, SEQ)
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=0)
    assert (a[:, 10:] - b[:, 10:]).abs().max() > 1e-3  # and the change does reach later positions


def _normed_qkv(n_kv_head: int, T: int, hd: int = 8, heads: int = 4):
    """q (2, heads, T, hd), k and v (2, n_kv_head, T, hd); q and k RMS-normalised as QK-norm leaves them."""
    q = rms_norm(torch.randn(2, heads, T, hd))
    return q, rms_norm(torch.randn(2, n_kv_head, T, hd)), torch.randn(2, n_kv_head, T, hd)


@pytest.mark.parametrize("n_kv_head, T", [(4, 16), (2, 16), (1, 16), (2, 300), (4, 700), (2, 1000)])
def test_cpu_attention_matches_sdpa(n_kv_head, T):
    """The CPU path (one chunk up to T=512, 2 and 3 uneven query chunks above) equals SDPA."""
    torch.manual_seed(0)
    q, k, v = _normed_qkv(n_kv_head, T)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=n_kv_head != 4)
    torch.testing.assert_close(causal_attention(q, k, v), want, atol=1e-5, rtol=1e-5)


def test_cpu_attention_softmax_needs_no_max_pass_for_normed_inputs():
    """With q = k the same normalised vector every score is sqrt(hd), the largest QK-norm allows;
    at hd 4096 exp(64) summed over the keys still fits fp32, so the output is v's running mean."""
    T, hd = 64, 4096
    q = rms_norm(torch.randn(1, 1, 1, hd)).expand(1, 1, T, hd).contiguous()
    v = torch.randn(1, 1, T, hd)
    running_mean = v.cumsum(2) / torch.arange(1, T + 1)[:, None]
    torch.testing.assert_close(causal_attention(q, q.clone(), v), running_mean, atol=1e-4, rtol=1e-4)


def _attention_grads(fn, q, k, v, grad_out):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v)
    out.backward(grad_out)
    return out.detach(), q.grad, k.grad, v.grad


@pytest.mark.parametrize("n_kv_head, T", [(4, 16), (2, 300), (1, 700), (4, 1000)])
def test_cpu_attention_gradients_match_autograd(n_kv_head, T):
    """The hand-written backward (per-chunk dq, key blocks summed over the chunks that saw them)
    gives autograd's gradients through SDPA, with grouped-query heads too."""
    torch.manual_seed(0)
    q, k, v = _normed_qkv(n_kv_head, T)
    grad_out = torch.randn(2, 4, T, 8)
    sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=n_kv_head != 4)
    for got, want in zip(_attention_grads(causal_attention, q, k, v, grad_out),
                         _attention_grads(sdpa, q, k, v, grad_out), strict=True):  # fmt: skip
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cpu_attention_bf16_compiled_matches_fp32():
    """In bf16 and under torch.compile (how pretraining runs it) the gradients stay within bf16
    rounding of the fp32 reference."""
    torch.manual_seed(0)
    q, k, v = _normed_qkv(2, 300, hd=16, heads=2)
    grad_out = torch.randn(2, 2, 300, 16)
    ref = _attention_grads(causal_attention, q, k, v, grad_out)
    bf16 = [t.bfloat16() for t in (q, k, v, grad_out)]
    got = _attention_grads(torch.compile(causal_attention, fullgraph=True), *bf16)
    for g, r in zip(got, ref, strict=True):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.float(), r, atol=3e-2, rtol=3e-2)


def test_rotary_is_a_relative_rotation():
    """Rotations keep norms, and <rot(q, m), rot(k, n)> depends only on m - n."""
    model = make_model()
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    rot = lambda x, pos: apply_rotary(x, model.cos[:, pos : pos + 1], model.sin[:, pos : pos + 1])
    torch.testing.assert_close(rot(q, 7).norm(), q.norm())
    dot = lambda m, n: (rot(q, m) * rot(k, n)).sum()
    torch.testing.assert_close(dot(3, 1), dot(12, 10), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(dot(3, 1), dot(3, 2), atol=1e-3)
    # the pair (x[i], x[i + hd/2]) turns by position * base ** (-2i / hd)
    x = torch.zeros(1, 1, 1, 8)
    x[..., 1] = 1.0
    angle = 5 * model.config.rope_base ** (-2 / 8)
    expected = torch.zeros(8)
    expected[1], expected[5] = math.cos(angle), -math.sin(angle)
    torch.testing.assert_close(rot(x, 5).flatten(), expected, atol=1e-6, rtol=0)


def test_softcap_is_tanh():
    z = torch.linspace(-200, 200, 1001)
    torch.testing.assert_close(softcap_logits(z, 15.0), 15.0 * torch.tanh(z / 15.0), atol=2e-5, rtol=0)


def test_logits_are_fp32_and_capped_under_bf16_autocast():
    model = make_model()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tokens(1, 8))
    assert logits.dtype == torch.float32 and logits.shape == (1, 8, VOCAB)
    assert logits.abs().max() <= model.config.softcap


def test_loss_at_init_is_log_vocab():
    model = make_model(randomize=False)
    with torch.no_grad():
        loss = model(tokens(4, SEQ), tokens(4, SEQ, seed=2))
    assert abs(loss.item() - math.log(VOCAB)) < 0.02


def test_loss_reduction_and_ignore_index():
    model = make_model()
    idx, targets = tokens(2, SEQ), tokens(2, SEQ, seed=2)
    targets[0, :5] = -1
    with torch.no_grad():
        per_token = model(idx, targets, loss_reduction="none")
        mean = model(idx, targets)
    assert per_token.shape == (2, SEQ)
    assert torch.all(per_token[0, :5] == 0)
    torch.testing.assert_close(mean, per_token[targets != -1].mean())
    with pytest.raises(ValueError, match="loss_reduction"):
        model(idx, targets, loss_reduction="max")


def test_training_forward_traces_as_one_graph():
    """torch.compile-friendly: dynamo captures forward + loss with no graph break (fullgraph=True
    raises on any), checked with the tracing-only "eager" backend to stay fast."""
    model = make_model(n_kv_head=2)
    idx, targets = tokens(2, SEQ), tokens(2, SEQ, seed=2)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(idx, targets), model(idx, targets))


def test_overfits_a_repeated_batch():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB, seq_len=16, n_layer=2, n_embd=64, n_head=2, n_kv_head=1)
    model = GPT(cfg)
    optimizers = build_optimizers(model)
    idx = tokens(4, 17)
    x, y = idx[:, :-1], idx[:, 1:]
    losses = []
    for _ in range(40):
        loss = model(x, y)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[0] > 4.0
    assert losses[-1] < 0.2 * losses[0], losses[::5]


# --- KV cache ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_kv_cache_logits_match_full_forward(n_kv_head):
    model = make_model(n_kv_head=n_kv_head)
    idx = tokens(2, 20)
    with torch.no_grad():
        full = model(idx)
        cache = model.new_kv_cache(batch_size=2, max_len=20)
        parts = [model(idx[:, :8], kv_cache=cache)]  # prefill from scratch
        assert cache.pos == 8
        parts.append(model(idx[:, 8:12], kv_cache=cache))  # a chunk after cached positions
        for t in range(12, 20):  # then one token at a time
            parts.append(model(idx[:, t : t + 1], kv_cache=cache))
    assert cache.pos == 20
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)


def test_bf16_kv_cache_under_autocast_and_without():
    model = make_model(n_kv_head=2)
    idx = tokens(1, 12)
    with torch.no_grad():
        full = model(idx)
        for autocast in (False, True):
            cache = model.new_kv_cache(batch_size=1, max_len=12, dtype=torch.bfloat16)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                parts = [model(idx[:, :6], kv_cache=cache)] + [
                    model(idx[:, t : t + 1], kv_cache=cache) for t in range(6, 12)
                ]
            assert cache.k.dtype == torch.bfloat16
            torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=0.15, rtol=0.05)


def test_kv_cache_expand_shares_one_prefill():
    model = make_model(n_kv_head=2)
    prompt = tokens(1, 10)
    continuations = tokens(3, 4, seed=5)
    with torch.no_grad():
        cache = model.new_kv_cache(batch_size=1, max_len=14)
        model(prompt, kv_cache=cache)
        many = cache.expand(3)
        assert many.batch_size == 3 and many.pos == 10 and cache.pos == 10
        stepped = [model(continuations[:, t : t + 1], kv_cache=many) for t in range(4)]
        full = model(torch.cat([prompt.expand(3, -1), continuations], dim=1))[:, 10:]
    torch.testing.assert_close(torch.cat(stepped, dim=1), full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="batch-1"):
        many.expand(2)


def test_kv_cache_reset_overflow_and_decoding_past_seq_len():
    model = make_model()
    cache = model.new_kv_cache(batch_size=1, max_len=SEQ + 8)  # longer than the training context
    with torch.no_grad():
        model(tokens(1, SEQ + 8), kv_cache=cache)
        with pytest.raises(ValueError, match="KV cache full"):
            model(tokens(1, 1), kv_cache=cache)
        cache.reset()
        assert cache.pos == 0
        model(tokens(1, 4), kv_cache=cache)
    assert cache.pos == 4
    with pytest.raises(ValueError, match="rotary"):
        model.new_kv_cache(batch_size=1, max_len=model.max_positions + 1)


def test_kv_cache_layout():
    cache = KVCache(batch_size=2, n_layer=3, n_kv_head=2, head_dim=8, max_len=5)
    assert cache.k.shape == (3, 2, 2, 5, 8) and cache.max_len == 5 and cache.pos == 0


def test_generate_greedy_matches_argmax_of_full_forward():
    model = make_model(n_kv_head=2)
    prompt = tokens(2, 5)
    out = model.generate_greedy(prompt, max_new_tokens=6)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], prompt)
    with torch.no_grad():
        for t in range(5, 11):
            assert torch.equal(model(out[:, :t])[:, -1].argmax(-1), out[:, t])


# --- sizes and config ------------------------------------------------------------------------------


def test_param_and_flop_counts():
    model = make_model(n_head=4, n_kv_head=2)
    c = model.config
    hd = c.head_dim
    per_layer = c.n_embd * (c.n_head + 2 * c.n_kv_head) * hd + c.n_head * hd * c.n_embd + 8 * c.n_embd**2
    assert model.num_params() == 2 * c.vocab_size * c.n_embd + c.n_layer * per_layer
    assert model.num_scaling_params() == model.num_params() - c.vocab_size * c.n_embd
    attention = 12 * c.n_layer * c.n_head * hd * c.seq_len
    assert model.flops_per_token() == 6 * model.num_scaling_params() + attention
    assert not any("bias" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize(
    "args, want",
    [
        ((20,), dict(n_layer=20, n_embd=1280, n_head=10, n_kv_head=10)),
        ((4,), dict(n_layer=4, n_embd=256, n_head=2, n_kv_head=2)),
        ((1,), dict(n_layer=1, n_embd=64, n_head=1, n_kv_head=1)),  # narrower than one head
        ((3, 50), dict(n_layer=3, n_embd=256, n_head=2, n_kv_head=2)),  # 150 rounds up to 2 x 128
        ((32, 64, 128, 4), dict(n_layer=32, n_embd=2048, n_head=16, n_kv_head=4)),
        ((12, 64, 128, 4), dict(n_layer=12, n_embd=768, n_head=6, n_kv_head=1)),  # 6 // 4 = 1 divides 6
        ((16, 64, 128, 4), dict(n_layer=16, n_embd=1024, n_head=8, n_kv_head=2)),
    ],
)
def test_dims_from_depth(args, want):
    dims = dims_from_depth(*args)
    assert dims == want
    GPTConfig(vocab_size=10, seq_len=8, **dims)  # always a valid config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(n_head=3), "divisible by n_head"),
        (dict(n_kv_head=3), "divisible by n_kv_head"),
        (dict(n_layer=0), "n_layer"),
        (dict(n_embd=24, n_head=8, n_kv_head=8), "even"),
    ],
)
def test_config_rejects_bad_shapes(overrides, message):
    kwargs = dict(vocab_size=10, seq_len=8, n_layer=2, n_embd=32, n_head=4, n_kv_head=4) | overrides
    with pytest.raises(ValueError, match=message):
        GPTConfig(**kwargs)


# --- device selection ---------------------------------------------------------------------------


def test_pick_device():
    assert dev.pick_device("cpu") == torch.device("cpu")
    assert dev.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        dev.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            dev.pick_device("cuda:0")


_STEP_FAULTS = """
import resource, sys, torch
from llmstack import device
from llmstack.model import GPT, GPTConfig
if sys.argv[1] == "keep":
    assert device.keep_freed_cpu_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
model = GPT(GPTConfig(vocab_size=2048, seq_len=256, n_layer=2, n_embd=128, n_head=2, n_kv_head=2))
x = torch.randint(0, 2048, (4, 256))
def step():
    model(x, x).backward()
    model.zero_grad(set_to_none=True)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_cpu_memory_is_reused_not_faulted_in_again():
    """After keep_freed_cpu_memory a training step reuses its freed activations: glibc's default
    hands them back to the kernel and every step page-faults them in again."""
    faults = {}
    for mode in ("default", "keep"):
        done = subprocess.run([sys.executable, "-c", _STEP_FAULTS, mode], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        faults[mode] = int(done.stdout.split()[-1])
    assert faults["default"] > 1000, faults
    assert faults["keep"] < faults["default"] / 3, faults


def test_autocast_dtype_and_context():
    cpu = torch.device("cpu")
    assert dev.autocast_dtype(cpu, "fp32") is None
    assert dev.autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert dev.autocast_dtype(cpu, "auto") == (torch.bfloat16 if dev.cpu_has_fast_bf16() else None)
    with pytest.raises(ValueError, match="precision"):
        dev.autocast_dtype(cpu, "fp8")
    a = torch.randn(4, 4)
    with dev.autocast_context(cpu, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with dev.autocast_context(cpu, None):
        assert (a @ a).dtype == torch.float32


def test_set_cpu_threads_splits_cores(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "4")
        assert dev.set_cpu_threads(2) == 2 and torch.get_num_threads() == 2
        assert dev.set_cpu_threads(8) == 1
        with pytest.raises(ValueError):
            dev.set_cpu_threads(0)
    finally:
        torch.set_num_threads(before)


def test_peak_flops_is_measured_and_cached():
    cpu = torch.device("cpu")
    first = dev.peak_flops(cpu, torch.float32)
    assert 1e8 < first < 1e14
    assert dev.peak_flops(cpu, torch.float32) == first


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("softcap", [15.0, 100.0])  # without and with the softmax's max pass
def test_training_loss_pass_equals_logits_then_cross_entropy(autocast, reduction, softcap, monkeypatch):
    # The one-pass chunked loss (llmstack.lm_loss, used when gradients are on) against softcapped
    # logits + F.cross_entropy: same loss and gradients, with ignored targets and several chunks.
    monkeypatch.setattr("llmstack.lm_loss.CHUNK_TOKENS", 40)
    model = make_model(n_kv_head=2)
    model.config.softcap = softcap
    idx, targets = tokens(3, SEQ), tokens(3, SEQ, seed=2)
    targets[0, :7] = -1
    targets[2, :] = -1  # a whole sequence ignored
    results = []
    for fused in (True, False):
        model.zero_grad()
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            if fused:
                loss = model(idx, targets, loss_reduction=reduction)
            else:
                logits = model(idx)
                loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1, reduction=reduction)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (a, ga), (b, gb) = results
    tol = 2e-2 if autocast else 1e-5
    torch.testing.assert_close(a, b, rtol=tol, atol=0)
    for name in ga:
        assert (ga[name] - gb[name]).norm() <= tol * gb[name].norm() + 1e-12, name
