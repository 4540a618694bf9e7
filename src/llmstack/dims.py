"""The depth dial's first step, free of torch so the workflow can plan runs without importing it."""

from __future__ import annotations

import math


def dims_from_depth(depth: int, aspect_ratio: int = 64, head_dim: int = 128, kv_ratio: int = 1) -> dict:
    """Width and heads from depth, as in nanochat: width = depth * aspect_ratio rounded up to a
    multiple of the head dim. Narrow models (width < head_dim) get one head as wide as the model.
    n_kv_head = n_head // kv_ratio, lowered to the nearest divisor of n_head (GQA needs one)."""
    for name, value in (("depth", depth), ("aspect_ratio", aspect_ratio), ("head_dim", head_dim)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if kv_ratio < 1:
        raise ValueError(f"kv_ratio must be >= 1, got {kv_ratio}")
    width = depth * aspect_ratio
    hd = min(head_dim, width)
    width = math.ceil(width / hd) * hd
    n_head = width // hd
    n_kv_head = max(1, n_head // kv_ratio)
    while n_head % n_kv_head:
        n_kv_head -= 1
    return {"n_layer": depth, "n_embd": width, "n_head": n_head, "n_kv_head": n_kv_head}
