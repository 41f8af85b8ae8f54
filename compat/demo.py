"""`irshim demo`: a small Llama-style decoder on irshim's CustomOp layers, run in shadow mode.

The model is vLLM-shaped: tokens flattened to ``[num_tokens, hidden]``,
RMSNorm layers that take and return the residual (the fused add-norm path),
the RotaryEmbedding CustomOp on query and key (GQA: fewer key heads), causal
attention in plain torch, and a gated MLP whose activation is the SiluAndMul
CustomOp. Weights come from a fixed seed, so two
runs see the same numbers. Each step runs a forward pass with irshim `off` and
then in the demo's mode; in `shadow` the two logits must be bit-identical (the
legacy path is sacred), in `on` the difference is printed.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import flags as _flags
from .layers import RMSNorm, SiluAndMul
from .layers.rotary_embedding import RotaryEmbedding
from .records import recorder

logger = logging.getLogger(__name__)

# Token counts of the forward passes, cycled: single-token decode steps and
# prefills of odd and power-of-two lengths, so the report has several buckets.
STEP_TOKENS = (1, 7, 16, 33, 64, 100, 128, 1, 250, 3, 512, 1)


@dataclass(frozen=True)
class DemoConfig:
    vocab_size: int = 2048
    hidden_size: int = 256
    num_heads: int = 8
    num_kv_heads: int = 4
    intermediate_size: int = 704
    num_layers: int = 4
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class Attention(nn.Module):
    def __init__(self, cfg: DemoConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.cfg = cfg
        q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.q_size, self.kv_size = q, kv
        self.qkv_proj = nn.Linear(cfg.hidden_size, q + 2 * kv, bias=False, dtype=dtype)
        self.o_proj = nn.Linear(q, cfg.hidden_size, bias=False, dtype=dtype)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta,
                                          is_neox_style=True, dtype=dtype)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        cfg, tokens = self.cfg, hidden.shape[0]
        q, k, v = self.qkv_proj(hidden).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        # vLLM's call: q and k are column slices of the qkv output; forward_cuda rotates them in place.
        q, k = self.rotary_emb(positions, q, k)
        q, k = q.view(tokens, cfg.num_heads, cfg.head_dim), k.view(tokens, cfg.num_kv_heads, cfg.head_dim)
        v = v.view(tokens, cfg.num_kv_heads, cfg.head_dim)
        group = cfg.num_heads // cfg.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True)
        return self.o_proj(out.transpose(0, 1).reshape(tokens, self.q_size))


class MLP(nn.Module):
    def __init__(self, cfg: DemoConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False, dtype=dtype)
        self.act_fn = SiluAndMul()
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DemoConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=dtype)
        self.self_attn = Attention(cfg, dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=dtype)
        self.mlp = MLP(cfg, dtype)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor,
                residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # vLLM's layer: the norm takes the residual and returns (normed, new residual).
        if residual is None:
            residual = hidden
            hidden = self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class DemoLlama(nn.Module):
    """Embedding -> decoder layers -> final RMSNorm -> logits."""

    def __init__(self, cfg: DemoConfig = DemoConfig(), dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, dtype=dtype)
        self.layers = nn.ModuleList(DecoderLayer(cfg, dtype) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=dtype)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False, dtype=dtype)
        self._init_weights(seed)

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        for name, param in self.named_parameters():
            if "norm" in name:  # norm weights around 1, not exactly 1, so the weight product matters
                values = 1.0 + 0.1 * torch.randn(param.shape, generator=generator)
            else:
                values = torch.randn(param.shape, generator=generator) / math.sqrt(param.shape[-1])
            param.copy_(values.to(param.dtype))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden, residual = self.embed_tokens(input_ids), None
        for layer in self.layers:
            hidden, residual = layer(positions, hidden, residual)
        hidden, _ = self.norm(hidden, residual)
        return self.lm_head(hidden)


def describe_device(device: torch.device) -> str:
    """`NVIDIA H100 80GB HBM3 (cuda:0)`, or the CPU's model name, for the report's context line."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} ({device.type}:{index})"
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {name} ({os.cpu_count()} cores)"


@dataclass
class DemoRun:
    run_id: str
    logs: Path
    steps: int
    mode: str
    device: str
    seconds: float
    identical: bool | None
    """shadow: every step's logits bit-identical to irshim off; on: None."""
    max_logit_diff: float
    context: dict[str, str]
    """What ran, for the report: model, device, dtype, torch version."""


def run_demo(steps: int = 8, device: str = "cpu", dtype: str = "bfloat16", mode: str = "shadow",
             report_dir: str | os.PathLike | None = None, run_id: str | None = None, layers: int = 4,
             log: Callable[[str], None] | None = None) -> DemoRun:
    """Run `steps` forward passes off and in `mode`; flush the records; return where they are."""
    say = log or (lambda text: logger.info("%s", text))
    if mode not in (_flags.SHADOW, _flags.ON):
        raise ValueError(f"demo mode must be 'shadow' or 'on', got {mode!r}")
    if steps < 1 or layers < 1:
        raise ValueError(f"steps and layers must be at least 1 (got steps={steps}, layers={layers})")
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA device here; use --device cpu")
    torch_dtype = getattr(torch, dtype)
    report_dir = os.fspath(report_dir or _flags.current().report_dir)
    run_id = run_id or time.strftime("demo-%Y%m%d-%H%M%S")
    _flags.parse_run_id(run_id)

    started = time.perf_counter()
    cfg = DemoConfig(num_layers=layers)
    model = DemoLlama(cfg, torch_dtype).to(torch_device).eval()
    say(f"irshim demo: {layers}-layer Llama-style model (hidden {cfg.hidden_size}, {cfg.num_heads} heads, "
        f"vocab {cfg.vocab_size}), {dtype} on {torch_device}, {steps} forward passes in {mode} mode")

    previous_run = os.environ.get(_flags.RUN_ID)
    os.environ[_flags.RUN_ID] = run_id
    generator = torch.Generator().manual_seed(1234)
    try:
        # Every flush in the block (records buffered past 512, the 10 s timer, the
        # last one) goes to report_dir/run_id.
        with _flags.override(report_dir=report_dir):
            identical, max_diff = _steps(model, cfg, steps, mode, torch_device, generator, say)
            recorder.flush()
    finally:
        if previous_run is None:
            os.environ.pop(_flags.RUN_ID, None)
        else:
            os.environ[_flags.RUN_ID] = previous_run
    seconds = time.perf_counter() - started
    if mode == _flags.SHADOW and not identical:
        logger.error("irshim demo: shadow mode changed the model's outputs (max |diff| %.3g): a bug in irshim",
                     max_diff)
    context = {
        "source": f"irshim demo ({layers}-layer Llama-style model, hidden {cfg.hidden_size}, {steps} forward passes, "
                  f"{mode} mode, {dtype})",
        "device": describe_device(torch_device),
        "torch": torch.__version__,
        "shadow outputs": ("bit-identical to irshim off" if identical else f"differ by up to {max_diff:.3g}")
                          if mode == _flags.SHADOW else f"on mode: logits differ from off by up to {max_diff:.3g}",
    }
    return DemoRun(run_id=run_id, logs=Path(report_dir) / run_id, steps=steps, mode=mode, device=str(torch_device),
                   seconds=seconds, identical=identical if mode == _flags.SHADOW else None, max_logit_diff=max_diff,
                   context=context)


def _steps(model: DemoLlama, cfg: DemoConfig, steps: int, mode: str, device: torch.device,
           generator: torch.Generator, say: Callable[[str], None]) -> tuple[bool, float]:
    """Each step: the same inputs with irshim off (the reference) and in `mode`."""
    identical, max_diff = True, 0.0
    for step in range(steps):
        tokens = STEP_TOKENS[step % len(STEP_TOKENS)]
        ids = torch.randint(0, cfg.vocab_size, (tokens,), generator=generator).to(device)
        positions = torch.arange(tokens).to(device)
        # no_grad, not inference_mode: shadow snapshots read tensor version
        # counters, which inference tensors lack (reported to compat).
        with torch.no_grad():
            with _flags.override(dispatch=_flags.OFF):
                reference = model(ids, positions)
            with _flags.override(dispatch=mode):
                logits = model(ids, positions)
        same = torch.equal(reference, logits)
        diff = (reference.float() - logits.float()).abs().max().item()
        identical &= same
        max_diff = max(max_diff, diff)
        say(f"  step {step + 1}/{steps}: {tokens:4d} tokens, logits "
            + ("bit-identical to irshim off" if same else f"differ from irshim off by up to {diff:.3g}"))
    return identical, max_diff
