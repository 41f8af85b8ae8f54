"""Rotary embedding: native eager, Inductor (static shapes), Liger-Kernel, vLLM's
CUDA kernel (when vLLM is installed) and irshim's `triton` / `triton_inplace`
providers, side by side (harness.py says what is measured).

    python benchmarks/bench_rope.py [--quick] [--tokens 1,1024] [--out DIR] [--sweep]
    python benchmarks/bench_rope.py --smoke      # CPU, Triton interpreter, tiny: checks the script end to end

Cases: Llama-3-8B (32 query / 8 key heads x 128) and Llama-3-70B at TP8 (8 / 1 x
128), NeoX style, full rotary, bfloat16, positions drawn at random from an
8192-row cache; tokens {1, 16, 128, 1024, 4096, 16384}. Two extra rows at
4096 tokens (GPT-J style; partial rotary 64 of 128) for information.

Bytes (GB/s, % copy): query and key read and written, plus the cache rows
read (one ``rotary_dim`` row per token); positions are not counted.

Before timing, every provider's output on fresh inputs is compared with the
op's native semantics at the op's tolerance; a disagreement is listed under
"Errors" as ``check: ...`` (the provider is still timed).

Peers: ``native``, ``inductor``, ``liger``, ``vllm_c``. Liger's
``rope_forward(q, k, cos, sin)`` takes HF-style per-token cos/sin (NeoX, full
rotary only) instead of a cache and positions: they are gathered once per
input set outside the timed region, in float32 (so Liger computes in float32
and rounds once, like the IR), which is its best case (an HF model computes
them once per forward for all layers). It works in place, like vLLM's kernel
and ``triton_inplace``. The subject is ``triton``: the op called as users call it, its
priority pinned to the functional Triton provider.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

if "--smoke" in sys.argv:  # Triton reads this when kernels are decorated: before any import of triton
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import harness as H  # noqa: E402

import irshim.ir as ir  # noqa: E402

ir.load_providers()
from irshim.ir.ops.rotary import cos_sin_cache  # noqa: E402
from irshim.ir.tolerances import outside  # noqa: E402
from irshim.kernels.triton import rope as TR  # noqa: E402  (registers the providers if the package does not)

OP = ir.ops.rotary_embedding
# `triton` below is the op as users call it; pin its priority so the benchmark does not
# depend on the platform default (nor, on the CPU smoke run, on there being none).
ir.set_priority({"rotary_embedding": ["triton", "native"]})
MODELS = {  # name -> (query heads, key heads, head size)
    "llama3-8b": (32, 8, 128),
    "llama3-70b-tp8": (8, 1, 128),
}
TOKENS = [1, 16, 128, 1024, 4096, 16384]
EAGER_TOKENS = (1, 16)
MAX_POSITION = 8192
EXTRA = [  # (label, model, tokens, rotary_dim, neox): informative rows
    ("gptj", "llama3-8b", 4096, 128, False),
    ("partial64", "llama3-8b", 4096, 64, True),
]


def make_inputs(tokens: int, hq: int, hk: int, head_size: int, rotary_dim: int, neox: bool,
                dtype: torch.dtype, device: str, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    positions = torch.randint(0, MAX_POSITION, (tokens,), generator=g).to(device)
    query = torch.randn(tokens, hq * head_size, generator=g).to(device=device, dtype=dtype)
    key = torch.randn(tokens, hk * head_size, generator=g).to(device=device, dtype=dtype)
    cache = cos_sin_cache(MAX_POSITION, rotary_dim, dtype=dtype, device=device)
    return positions, query, key, head_size, rotary_dim, cache, neox


def rope_bytes(tokens: int, hq: int, hk: int, head_size: int, rotary_dim: int, itemsize: int) -> int:
    """q and k read and written, plus one cache row per token."""
    return 2 * tokens * (hq + hk) * head_size * itemsize + tokens * rotary_dim * itemsize


def cases(quick: bool, tokens: list[int], device: str = "cuda", dtype: torch.dtype = torch.bfloat16,
          models: dict = MODELS, extra: list = EXTRA) -> list[H.Case]:
    out = []
    tokens = [1, 1024, 16384] if quick else tokens
    rows = [(name, name, t, models[name][2], True) for name in models for t in tokens]
    rows += [] if quick else [(f"{m}-{label}", m, t, rd, neox) for label, m, t, rd, neox in extra]
    for label, model, t, rotary_dim, neox in rows:
        hq, hk, hs = models[model]
        out.append(H.Case(
            op=label, shape=f"{t}x{hq}q{hk}kx{hs}" + ("" if rotary_dim == hs else f"/rot{rotary_dim}"),
            dtype=str(dtype).removeprefix("torch."), tokens=t,
            bytes=rope_bytes(t, hq, hk, hs, rotary_dim, dtype.itemsize),
            make_args=lambda t=t, hq=hq, hk=hk, hs=hs, rd=rotary_dim, neox=neox: make_inputs(
                t, hq, hk, hs, rd, neox, dtype, device),
            eager=t in EAGER_TOKENS and device == "cuda",
        ))
    return out


# ------------------------------------------------------------- providers


def _liger():
    try:
        from liger_kernel.ops.rope import rope_forward
    except Exception as exc:  # reported, not fatal
        print(f"liger-kernel unavailable: {exc!r}", flush=True)
        return None

    def bind(case: H.Case, args: tuple):
        positions, query, key, head_size, rotary_dim, cache, neox = args
        if not neox or rotary_dim != head_size:
            return None  # Liger rotates NeoX-style over the whole head only
        tokens, half = query.shape[0], rotary_dim // 2
        rows = cache.index_select(0, positions).float()  # outside the timed region (see the docstring)
        # [1, T, head_size]: Liger reads the first half of each row (HF's cos/sin repeat their halves).
        cos = torch.cat((rows[:, :half], rows[:, :half]), dim=-1)[None].contiguous()
        sin = torch.cat((rows[:, half:], rows[:, half:]), dim=-1)[None].contiguous()
        q = query.view(1, tokens, -1, head_size).transpose(1, 2)  # its (bsz, heads, seq, dim) view
        k = key.view(1, tokens, -1, head_size).transpose(1, 2)
        return lambda: rope_forward(q, k, cos, sin)

    return H.Provider("liger", bind)


def _vllm_c():
    try:
        from vllm import _custom_ops as vllm_ops

        vllm_ops.rotary_embedding  # noqa: B018
    except Exception as exc:
        print(f"vLLM's rotary_embedding kernel unavailable: {exc!r}", flush=True)
        return None

    def bind(case: H.Case, args: tuple):
        positions, query, key, head_size, rotary_dim, cache, neox = args
        return lambda: vllm_ops.rotary_embedding(positions, query, key, head_size, cache, neox)

    return H.Provider("vllm_c", bind)


def providers(inductor: bool = True) -> list[H.Provider]:
    result = [H.Provider("native", lambda c, a: (lambda: OP.native(*a)))]
    if inductor:
        compiled = H.inductor(OP.native)
        result.append(H.Provider("inductor", lambda c, a: (lambda: compiled(*a))))
    for extra in (_liger(), _vllm_c()):
        if extra is not None:
            result.append(extra)
    inplace = OP.impls["triton_inplace"].impl_fn
    result += [
        # The IR op as users call it (dispatch; the priority is pinned to triton above).
        H.Provider("triton", lambda c, a: (lambda: OP(*a)), peer=False),
        # vLLM's convention: rotate query and key where they lie.
        H.Provider("triton_inplace", lambda c, a: (lambda: inplace(*a)), peer=False),
    ]
    return result


IN_PLACE = ("liger", "vllm_c", "triton_inplace")


def check(case: H.Case, provs: list[H.Provider]) -> dict[str, str]:
    """Each provider's output on fresh inputs against native, at the op's tolerance."""
    errors = {}
    for provider in provs:
        args = case.make_args()
        positions, query, key, head_size, rotary_dim, cache, neox = args
        expected = OP.native(*args)
        try:
            fn = provider.bind(case, args)
            if fn is None:
                continue
            out = fn()
            # In-place providers leave their result in query and key; the others return it.
            got = (query, key) if provider.name in IN_PLACE else out
            for name, a, e in zip(("query", "key"), got, expected):
                tol = OP.tolerance(e.dtype)
                bad = int(outside(a.reshape(e.shape), e, tol).sum())
                if bad:
                    worst = (a.reshape(e.shape).double() - e.double()).abs().max().item()
                    errors[provider.name] = (f"check: {name} has {bad} of {e.numel()} elements outside "
                                             f"atol={tol.atol} rtol={tol.rtol} (max abs err {worst:.3g})")
        except Exception as exc:
            errors[provider.name] = f"check raised {type(exc).__name__}: {exc}"[:300]
    return errors


# ------------------------------------------------------------------ sweep


def sweep() -> None:
    """Time launch configurations of the kernel (both forms) beside Inductor and Liger (input for rope_config)."""
    provs = {p.name: p for p in providers()}
    print("sweep: case | tokens/warps:us ... (* = heuristic) | peers", flush=True)
    for model, (hq, hk, hs) in MODELS.items():
        for t in TOKENS:
            sets = [make_inputs(t, hq, hk, hs, hs, True, torch.bfloat16, "cuda", seed=s)
                    for s in range(4 if t < 4096 else 1)]
            calls = max(2, min(100, (1 << 30) // rope_bytes(t, hq, hk, hs, hs, 2)))
            chosen = TR.rope_config(t, hq, hk, hs // 2)
            for form, into in (("functional", TR.rotary_embedding_into), ("inplace", TR.rotary_embedding_inplace_)):
                results = []
                for block_t in (1, 2, 4, 8):
                    for warps in (1, 2, 4, 8, 16):
                        base = TR.rope_config(t, hq, hk, hs // 2)
                        cfg = TR.RopeConfig(block_t, min(base.block_hq, max(1, 4096 // (block_t * hs // 2))),
                                            min(base.block_hk, max(1, 4096 // (block_t * hs // 2))), warps)
                        fns = [lambda a=a, cfg=cfg: into(*a, config=cfg) for a in sets]
                        results.append((H.graph_time_us(fns, calls), cfg))
                case = H.Case(model, f"{t}", "bfloat16", t, 0, lambda: None)
                peers = {p: H.graph_time_us([provs[p].bind(case, a) for a in sets], calls)
                         for p in ("inductor", "liger", "vllm_c") if p in provs}
                results.sort(key=lambda r: r[0])
                line = " ".join(f"{c.block_t}/{c.num_warps}:{us:.2f}{'*' if c == chosen else ''}"
                                for us, c in results[:8])
                print(f"sweep {model} {form} {t} tokens | {line} | "
                      + " ".join(f"{p}:{us:.2f}" for p, us in peers.items()), flush=True)


# ------------------------------------------------------------------ smoke


def smoke(out_dir: Path) -> None:
    """CPU end-to-end check of this script: tiny heads, the interpreter, perf_counter timings."""
    models = {"tiny-gqa": (4, 2, 32), "tiny-mqa": (2, 1, 32)}
    extra = [("gptj", "tiny-gqa", 16, 32, False), ("partial16", "tiny-gqa", 16, 16, True)]
    provs = providers(inductor="--smoke-inductor" in sys.argv)
    names = [p.name for p in provs]
    rows = []
    for case in cases(False, [1, 16], device="cpu", models=models, extra=extra):
        row = _smoke_case(case, provs)
        rows.append(H.summarise(row, 1.0, "triton", [p.name for p in provs if p.peer]))
        H.print_table(rows[-1:], names, header=len(rows) == 1)
        for p, e in row.errors.items():
            print(f"  error {p}: {e}", flush=True)
    env = {"gpu": "CPU smoke run (Triton interpreter; times are host wall clock, not GPU figures)",
           "sm_count": 0, "torch": torch.__version__, "triton": _triton_version(), "cuda": None,
           "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    H.write_results("bench_rope_smoke", out_dir, env, {"copy": 1.0}, rows, names, "triton",
                    notes="Smoke run: checks the script end to end; % copy is meaningless here.")
    failed = [f"{r['op']} {p}: {e}" for r in rows for p, e in r["errors"].items()]
    print(f"smoke: {len(rows)} cases, results in {out_dir}; " + (f"FAILED: {failed}" if failed else "all checks passed"))
    if failed:
        raise SystemExit(1)


def _smoke_case(case: H.Case, provs: list[H.Provider]) -> H.Row:
    row = H.Row(case.op, case.shape, case.dtype, case.tokens, case.bytes)
    row.errors.update(check(case, provs))
    args = case.make_args()
    for provider in provs:
        fn = provider.bind(case, args)
        if fn is None:
            continue
        fn()  # warm-up (the interpreter has no compile step, Inductor has)
        start = time.perf_counter()
        fn()
        row.graph_us[provider.name] = (time.perf_counter() - start) * 1e6
    return row


def _triton_version() -> str:
    import triton

    return triton.__version__


def main() -> None:
    if "--smoke" in sys.argv:
        rest = [a for a in sys.argv[1:] if a not in ("--smoke", "--smoke-inductor")]
        out = Path(rest[rest.index("--out") + 1]) if "--out" in rest else Path(tempfile.mkdtemp(prefix="bench_rope_"))
        smoke(out)
        return
    args = H.parse_args(__doc__.split("\n")[0])
    if args.sweep:
        sweep()
        return
    H.run_suite("bench_rope", args, cases(args.quick, H.int_list(args.tokens, TOKENS)), providers(),
                check=check, notes="Liger: per-token float32 cos/sin gathered outside the timed region, in place. "
                          "vllm_c: vLLM's ops.rotary_embedding (in place), when vLLM is installed. "
                          "triton_inplace: irshim's in-place provider (not a peer). In-place providers write into "
                          "the rotating input sets, the others into one reused output block (benchmarks/harness.py).")


if __name__ == "__main__":
    main()
