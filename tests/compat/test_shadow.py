"""Shadow mode: legacy result returned bit for bit, IR path compared, disagreements recorded."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import pytest
import torch

import irshim.compat as compat
from irshim.compat import CustomOp, ShadowMismatch
from irshim.compat import custom_op as custom_op_module
from irshim.compat import dispatch as dispatch_module
from irshim.compat.layers import RMSNorm, SiluAndMul
from irshim.ir import ops as ir_ops
from records_reading import summed_counts  # tests/records_reading.py


@pytest.fixture
def shadow(tmp_path):
    """Shadow mode writing records under tmp_path; yields a reader of the records written so far."""

    def read(kind: str | None = None) -> list[dict]:
        compat.flush()
        lines = [json.loads(line) for f in Path(tmp_path).rglob("*.jsonl") for line in f.read_text().splitlines()]
        if kind == "counts":
            return summed_counts(lines)
        return [r for r in lines if kind is None or r["kind"] == kind]

    with compat.override(dispatch="shadow", report_dir=tmp_path, shadow_sample=1, strict=False):
        compat.flush()
        yield read
        compat.flush()


def _ref_rms(x, w, eps):
    x64 = x.double()
    return x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * w.double()


@CustomOp.register("test_sh_rms_no_eps")
class RMSNormForgetsEpsilon(RMSNorm):
    """A subtly wrong fast path: epsilon ignored (the port of rms_norm applies via its parent)."""

    def forward_cpu(self, x, residual=None):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True))).to(x.dtype) * self.weight


def test_wrong_fast_path_gives_mismatch_records_with_the_right_max_error(shadow):
    eps = 0.1
    layer = RMSNormForgetsEpsilon(64, eps=eps)
    with torch.no_grad():
        layer.weight.copy_(1 + 0.1 * torch.randn(64, generator=torch.Generator().manual_seed(1)))
    x = 0.5 * torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    out = layer(x)
    assert torch.equal(out, layer.forward_cpu(x))  # the legacy (wrong) result is what the model sees
    (rec,) = [r for r in shadow("compare") if r["op"] == "test_sh_rms_no_eps"]
    assert rec["legacy"] == "forward_cpu" and rec["ir"] == "rms_norm/native" and not rec["passed"]
    (o,) = rec["outputs"]
    # Independent float64 estimate of |with eps - without eps|.
    w = layer.weight.detach()
    expected = (_ref_rms(x, w, eps) - _ref_rms(x, w, 0.0)).abs().max().item()
    assert o["max_abs"] == pytest.approx(expected, rel=1e-4)
    assert o["n_outside"] > 0 and o["passed"] is False


def test_correct_class_produces_no_mismatch(shadow):
    layer = RMSNorm(64, eps=1e-6)
    for seed in range(3):
        layer(torch.randn(4, 64, generator=torch.Generator().manual_seed(seed)))
    SiluAndMul()(torch.randn(4, 32))
    recs = [r for r in shadow("compare") if r["op"] in ("rms_norm", "silu_and_mul")]
    assert len(recs) == 4 and all(r["passed"] for r in recs)
    counts = {(r["op"]): r for r in shadow("counts")}
    assert counts["rms_norm"]["seen"] == 3 and counts["rms_norm"]["compared"] == 3


@CustomOp.register("test_sh_broken_native")
class BrokenNative(CustomOp):
    """Unported: its automatic op's candidate in shadow is forward_native, which raises."""

    def forward_native(self, x):
        raise RuntimeError("forward_native is broken")

    def forward_cpu(self, x):
        return x * 3


def test_ir_exception_is_recorded_and_legacy_returned(shadow, caplog):
    from irshim.compat import dispatch

    dispatch._logged.clear()
    layer = BrokenNative()
    x = torch.ones(3)
    with caplog.at_level(logging.WARNING, logger="irshim.compat"):
        assert torch.equal(layer(x), torch.full((3,), 3.0))
        assert torch.equal(layer(x), torch.full((3,), 3.0))
    (err, err2) = [r for r in shadow("error") if r["op"] == "test_sh_broken_native"]
    assert err["error"]["type"] == "RuntimeError" and "broken" in err["error"]["message"]
    assert err["legacy"] == "forward_cpu" and err["ir"] == "test_sh_broken_native/native"
    assert sum("raised RuntimeError" in r.message for r in caplog.records) == 1  # rate-limited
    with compat.override(strict=True), pytest.raises(RuntimeError, match="broken"):
        layer(x)


def test_a_failing_comparison_is_recorded_and_legacy_returned(shadow, monkeypatch, caplog):
    from irshim.compat import dispatch
    from irshim.compat import shadow as shadow_module

    def broken(*args):
        raise RuntimeError("no comparison today")

    dispatch._logged.clear()
    monkeypatch.setattr(shadow_module, "_compare_pairs", broken)
    layer = SiluAndMul()
    x = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
    with caplog.at_level(logging.WARNING, logger="irshim.compat"):
        assert torch.equal(layer(x), layer.forward_cpu(x))
    (rec,) = [r for r in shadow("compare") if r["op"] == "silu_and_mul"]
    (o,) = rec["outputs"]
    assert not rec["passed"] and o["note"] == "comparison raised RuntimeError: no comparison today"
    assert "max_abs" not in o and any("comparing the results of silu_and_mul raised" in r.message
                                      for r in caplog.records)


@CustomOp.register("test_sh_strided")
class StridedResult(CustomOp):
    """Returns a strided view (as RoPE's legacy path returns column slices of qkv)."""

    def forward_native(self, x):
        return (x * 2).t()

    def forward_cpu(self, x):
        return (x + x).t()


def test_strided_values_are_compared_as_contiguous_copies(shadow, monkeypatch):
    from irshim.compat import shadow as shadow_module

    seen = []
    real_compare = shadow_module._compare_pairs

    def spy(actual, expected, baseline, atol, rtol):
        seen.extend(t for t in (*actual, *expected, *baseline) if t is not None)
        return real_compare(actual, expected, baseline, atol, rtol)

    monkeypatch.setattr(shadow_module, "_compare_pairs", spy)
    with torch.inference_mode():  # the input gets a pristine copy too
        x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
        out = StridedResult()(x)
    assert not out.is_contiguous() and torch.equal(out, 2 * x.t())  # the model still gets legacy's view
    (rec,) = [r for r in shadow("compare") if r["op"] == "test_sh_strided"]
    assert rec["passed"] and [o["name"] for o in rec["outputs"]] == ["out0"]
    # The output pair, and x's pair with its pristine copy (dropped: nobody changed x).
    assert len(seen) == 5 and all(t.is_contiguous() for t in seen)


def test_strict_mode_raises_on_mismatch(shadow):
    with compat.override(strict=True), pytest.raises(ShadowMismatch, match="max abs err"):
        RMSNormForgetsEpsilon(16, eps=0.5)(torch.randn(2, 16))


def _cuda_like_rms_norm(monkeypatch, hidden):
    """An RMSNorm bound to forward_cuda (the in-place fused path), as on a GPU."""
    monkeypatch.setattr(custom_op_module, "device_family", lambda: "cuda")
    layer = RMSNorm(hidden, eps=1e-5, dtype=torch.bfloat16)
    monkeypatch.undo()
    with torch.no_grad():
        layer.weight.copy_(1 + 0.1 * torch.randn(hidden, generator=torch.Generator().manual_seed(3)))
    assert layer._forward_method.__name__ == "forward_cuda"
    return layer


CASES = {
    "rms_norm": lambda mp: (RMSNorm(48, eps=1e-5), lambda g: (torch.randn(5, 48, generator=g),)),
    "rms_norm_residual_inplace": lambda mp: (
        _cuda_like_rms_norm(mp, 48),
        lambda g: (torch.randn(5, 48, generator=g).bfloat16(), torch.randn(5, 48, generator=g).bfloat16())),
    "rms_norm_residual_native": lambda mp: (
        RMSNorm(48), lambda g: (torch.randn(5, 48, generator=g), torch.randn(5, 48, generator=g))),
    "silu_and_mul_bf16": lambda mp: (SiluAndMul(), lambda g: (torch.randn(7, 64, generator=g).bfloat16(),)),
    "unported": lambda mp: (BrokenNative(), lambda g: (torch.randn(4, generator=g),)),
}


@pytest.mark.parametrize("mode", ["off", "shadow"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_off_and_shadow_are_bit_identical_to_no_irshim(case, mode, shadow, monkeypatch):
    layer, make = CASES[case](monkeypatch)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    mine, theirs = make(g1), make(g2)
    reference = layer._forward_method(*theirs)  # what the model runs without irshim
    with compat.override(dispatch=mode):
        got = layer(*mine)
    ref_list = list(reference) if isinstance(reference, tuple) else [reference]
    got_list = list(got) if isinstance(got, tuple) else [got]
    assert len(got_list) == len(ref_list)
    for a, b in zip(got_list, ref_list):
        assert torch.equal(a, b) and a.dtype == b.dtype and a.stride() == b.stride()
    for a, b in zip(mine, theirs):  # in-place effects on the inputs too
        assert torch.equal(a, b)
    if case == "rms_norm_residual_inplace":
        assert got_list[0] is mine[0] and got_list[1] is mine[1]  # the fused path returns its inputs
        assert not torch.equal(mine[0], make(torch.Generator().manual_seed(7))[0])  # ... which it overwrote
    if mode == "shadow" and case == "rms_norm_residual_inplace":
        (rec,) = [r for r in shadow("compare") if r["op"] == "rms_norm"]
        names = [o["name"] for o in rec["outputs"]]
        assert names == ["out0", "out1", "mutated:x", "mutated:residual"] and rec["passed"], rec


def test_mutated_inputs_returned_as_outputs_reuse_the_output_comparison(shadow, monkeypatch):
    from irshim.compat import shadow as shadow_module

    layer, make = CASES["rms_norm_residual_inplace"](monkeypatch)  # (undoes monkeypatch's changes)
    compared = []
    real_compare = shadow_module._compare_pairs

    def spy(actual, expected, baseline, atol, rtol):
        compared.append([(a.data_ptr(), e.data_ptr()) for a, e in zip(actual, expected)])
        return real_compare(actual, expected, baseline, atol, rtol)

    monkeypatch.setattr(shadow_module, "_compare_pairs", spy)
    layer(*make(torch.Generator().manual_seed(7)))
    (rec,) = [r for r in shadow("compare") if r["op"] == "rms_norm"]
    # The fused path returns x and residual: one batch of two pairs, each recorded twice.
    assert len(compared) == 1 and len(compared[0]) == 2 and len(set(compared[0])) == 2
    by_name = {o["name"]: o for o in rec["outputs"]}
    assert set(by_name) == {"out0", "out1", "mutated:x", "mutated:residual"}
    for out, mutated in (("out0", "mutated:x"), ("out1", "mutated:residual")):
        assert {**by_name[out], "name": mutated} == by_name[mutated]


def test_sampling_compares_a_fraction_and_counts_the_rest(shadow):
    layer = SiluAndMul()
    x = torch.randn(2, 8)
    with compat.override(shadow_sample=0.25):
        for _ in range(400):
            layer(x)
    (c,) = [r for r in shadow("counts") if r["op"] == "silu_and_mul"]
    assert c["seen"] == 400 and c["compared"] + c["skipped"]["sampling"] == 400
    assert 50 < c["compared"] < 150


def test_sampling_runs_are_geometric(monkeypatch):
    # Each call compared with probability p independently of the others: the run of
    # sampled-out calls before a compared one has length k with probability (1 - p)^k p.
    monkeypatch.setattr(dispatch_module, "_random", random.Random(0).random)
    p, n = 0.2, 20000
    lengths = [dispatch_module.run_length(p) for _ in range(n)]
    for k, expected in [(k, (1 - p) ** k * p) for k in range(4)] + [(None, (1 - p) ** 4)]:
        observed = (sum(x >= 4 for x in lengths) if k is None else lengths.count(k)) / n
        assert abs(observed - expected) < 5 * math.sqrt(expected * (1 - expected) / n), (k, observed, expected)
    assert dispatch_module.run_length(1.0) == 0
    assert dispatch_module.run_length(1e-300) > 10**15  # no overflow however small the sample


def test_sampled_out_calls_are_counted_at_every_flush(shadow):
    # The hot path only counts down its run; the calls made of a run are counted when
    # the records are written, mid-run, and when the settings change.
    layer, x, made = SiluAndMul(), torch.randn(2, 8), 0
    with compat.override(shadow_sample=1e-12):  # a run far longer than the test
        for calls in (50, 80):
            for _ in range(calls - made):
                layer(x)
            made = calls
            (c,) = [r for r in shadow("counts") if r["op"] == "silu_and_mul"]
            assert (c["seen"], c["compared"], c["skipped"]) == (calls, 0, {"sampling": calls})
    layer(x)  # compared (shadow_sample=1 again)
    (c,) = [r for r in shadow("counts") if r["op"] == "silu_and_mul"]
    assert (c["seen"], c["compared"], c["skipped"]) == (81, 1, {"sampling": 80})


_INPLACE_RAN: list[str] = []


@ir_ops.fused_add_rms_norm.register_impl("test_sh_fast")
def _test_sh_fast(x: torch.Tensor, x_residual: torch.Tensor, weight: torch.Tensor | None,
                  epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    _INPLACE_RAN.append("test_sh_fast")
    return ir_ops.fused_add_rms_norm.native(x, x_residual, weight, epsilon)


@ir_ops.fused_add_rms_norm.register_impl("test_sh_fast_inplace", inplace=True)
def _test_sh_fast_inplace(x: torch.Tensor, x_residual: torch.Tensor, weight: torch.Tensor | None,
                          epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    _INPLACE_RAN.append("test_sh_fast_inplace")
    out, residual = ir_ops.fused_add_rms_norm.native(x, x_residual, weight, epsilon)
    x.copy_(out)
    x_residual.copy_(residual)
    return x, x_residual


def test_shadow_compares_the_inplace_form_that_on_mode_runs(shadow, monkeypatch):
    """A layer whose legacy method works in place (RMSNorm.forward_cuda) calls the op's
    maybe_inplace overload in both modes: with `test_sh_fast` chosen, its in-place
    form runs, in `on` mode on the caller's tensors, in shadow mode on snapshots."""
    layer = _cuda_like_rms_norm(monkeypatch, 48)
    g = torch.Generator().manual_seed(5)
    x, r = torch.randn(5, 48, generator=g).bfloat16(), torch.randn(5, 48, generator=g).bfloat16()
    expected = ir_ops.fused_add_rms_norm.native(x, r, layer.weight, layer.variance_epsilon)
    _INPLACE_RAN.clear()
    op = ir_ops.fused_add_rms_norm
    dispatched = []
    monkeypatch.setattr(op, "dispatch", lambda *a, **k: dispatched.append(1) or type(op).dispatch(op, *a, **k))
    with op.set_priority(["test_sh_fast", "native"]):
        xs, rs = x.clone(), r.clone()
        out, res = layer(xs, rs)
        assert len(dispatched) == 1  # the label's choice runs: no second dispatch
        (record,) = [c for c in shadow("compare") if c["op"] == "rms_norm"]
        assert record["ir"] == "fused_add_rms_norm/test_sh_fast_inplace" and record["passed"]
        assert out is xs and res is rs and torch.equal(xs, expected[0]) and torch.equal(rs, expected[1])
        with compat.override(dispatch="on"):
            xo, ro = x.clone(), r.clone()
            out, res = layer(xo, ro)
            assert out is xo and res is ro and torch.equal(xo, expected[0]) and torch.equal(ro, expected[1])
    assert _INPLACE_RAN == ["test_sh_fast_inplace", "test_sh_fast_inplace"]


def test_an_inplace_provider_chosen_for_a_functional_legacy_call_gets_copies(shadow):
    """forward_native never mutates: its port calls the default overload, which hands
    an in-place provider copies, so the snapshots stay as legacy left its inputs."""
    layer = RMSNorm(48)
    g = torch.Generator().manual_seed(6)
    x, r = torch.randn(5, 48, generator=g), torch.randn(5, 48, generator=g)
    _INPLACE_RAN.clear()
    with ir_ops.fused_add_rms_norm.set_priority(["test_sh_fast_inplace", "native"]):
        layer(x, r)
    (record,) = [c for c in shadow("compare") if c["op"] == "rms_norm"]
    assert _INPLACE_RAN == ["test_sh_fast_inplace"] and record["ir"] == "fused_add_rms_norm/test_sh_fast_inplace"
    assert [o["name"] for o in record["outputs"]] == ["out0", "out1"] and record["passed"]


def test_port_refusal_runs_legacy_and_is_counted(shadow):
    layer = RMSNorm(16, var_hidden_size=8)
    x = torch.randn(2, 1, 16)
    assert torch.equal(layer(x), layer.forward_native(x))
    (c,) = [r for r in shadow("counts") if r["op"] == "rms_norm"]
    assert c["skipped"] == {"port_refused": 1} and c["compared"] == 0


@CustomOp.register("test_sh_native_only")
class NativeOnly(CustomOp):
    def forward_native(self, x):
        return x - 1


def test_code_is_never_compared_with_itself(shadow):
    NativeOnly()(torch.zeros(2))
    assert not [r for r in shadow("compare") if r["op"] == "test_sh_native_only"]
    (c,) = [r for r in shadow("counts") if r["op"] == "test_sh_native_only"]
    assert c["skipped"] == {"same_code": 1}


def test_tracing_dispatch_modes_are_skipped_and_counted(shadow):
    from torch.fx.experimental.proxy_tensor import make_fx

    layer = SiluAndMul()
    make_fx(lambda x: layer(x))(torch.randn(2, 8))
    (c,) = [r for r in shadow("counts") if r["op"] == "silu_and_mul"]
    assert c["skipped"] == {"compiling": 1}


@pytest.mark.cuda
def test_cuda_graph_capture_is_skipped_and_counted(shadow):
    layer = SiluAndMul().cuda()
    x = torch.randn(4, 64, device="cuda")
    layer(x)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        layer(x)
    graph.replay()
    (c,) = [r for r in shadow("counts") if r["op"] == "silu_and_mul"]
    assert c["skipped"].get("cuda_graph_capture") == 1


def test_mismatch_warning_is_rate_limited(shadow, caplog):
    from irshim.compat import dispatch

    dispatch._logged.clear()  # earlier tests already warned about this op
    layer = RMSNormForgetsEpsilon(16, eps=0.5)
    with caplog.at_level(logging.WARNING, logger="irshim.compat"):
        for _ in range(5):
            layer(torch.randn(2, 16))
    assert sum("disagrees with legacy" in r.message for r in caplog.records) == 1
    assert len([r for r in shadow("compare") if r["op"] == "test_sh_rms_no_eps"]) == 5


def test_deferred_mutation_entries_are_kept_only_when_the_input_changed(shadow, monkeypatch):
    """Inference tensors' mutation entries wait, like the figures, for the batched fetch
    (what a GPU run does); only those whose input either side changed are recorded."""
    from irshim.compat import shadow as shadow_module

    # Built first: the in-place case's helper undoes the monkeypatches made before it.
    inplace, make_inplace = CASES["rms_norm_residual_inplace"](monkeypatch)
    act, make_act = CASES["silu_and_mul_bf16"](monkeypatch)

    class QueuingTimer(shadow_module._Timer):
        """Host-clock marks, but `cuda` set: run_shadow queues the call as on a GPU."""

        def __init__(self, inputs):
            super().__init__(inputs)
            self.cuda = True

        def mark(self):
            self.marks.append(time.perf_counter())

        def spans_us(self):
            return [(b - a) * 1e6 for a, b in zip(self.marks, self.marks[1:])]

    batches = []
    real_resolve = shadow_module.resolve_pending
    monkeypatch.setattr(shadow_module, "_Timer", QueuingTimer)

    def spy():
        batches.append(len(shadow_module._pending))
        return real_resolve()

    monkeypatch.setattr(shadow_module, "resolve_pending", spy)
    monkeypatch.setattr(shadow_module.recorder, "before_flush", [spy])
    with torch.inference_mode():
        inplace(*make_inplace(torch.Generator().manual_seed(1)))
        act(*make_act(torch.Generator().manual_seed(2)))
    records = {r["op"]: r for r in shadow("compare")}
    assert batches and batches[0] == 2  # both calls waited for the batch
    assert [o["name"] for o in records["rms_norm"]["outputs"]] == ["out0", "out1", "mutated:x", "mutated:residual"]
    assert [o["name"] for o in records["silu_and_mul"]["outputs"]] == ["out0"]
    assert records["rms_norm"]["passed"] and records["silu_and_mul"]["passed"]


@pytest.mark.cuda
def test_compared_calls_under_inference_mode_do_not_synchronise(shadow):
    # vLLM's model runner is under inference_mode: deciding which inputs were mutated
    # must not stall the stream (it used to read a bool back per input).
    layer, act = RMSNorm(256, eps=1e-5, dtype=torch.bfloat16).cuda(), SiluAndMul()
    with torch.inference_mode():
        x, r = torch.randn(8, 256, device="cuda", dtype=torch.bfloat16), torch.randn(8, 256, device="cuda",
                                                                                   dtype=torch.bfloat16)
        h = torch.randn(8, 512, device="cuda", dtype=torch.bfloat16)
        layer(x, r), act(h)  # first calls: warm-up (kernel compilation may synchronise)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            layer(x, r)
            act(h)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    records = [r for r in shadow("compare") if r["op"] in ("rms_norm", "silu_and_mul")]
    assert len(records) == 4 and all(r["passed"] for r in records)
    names = {r["op"]: [o["name"] for o in r["outputs"]] for r in records}
    assert names["rms_norm"] == ["out0", "out1", "mutated:x", "mutated:residual"]
    assert names["silu_and_mul"] == ["out0"]


@pytest.mark.parametrize("case", ["rms_norm_residual_inplace", "silu_and_mul_bf16", "unported"])
def test_shadow_under_inference_mode(case, shadow, monkeypatch):
    """vLLM runs models under torch.inference_mode, whose tensors have no version counter."""
    layer, make = CASES[case](monkeypatch)
    with torch.inference_mode():
        mine, theirs = make(torch.Generator().manual_seed(7)), make(torch.Generator().manual_seed(7))
        reference = layer._forward_method(*theirs)
        got = layer(*mine)
    ref_list = list(reference) if isinstance(reference, tuple) else [reference]
    got_list = list(got) if isinstance(got, tuple) else [got]
    for a, b in zip(got_list, ref_list):
        assert torch.equal(a, b)
    for a, b in zip(mine, theirs):
        assert torch.equal(a, b)
    records = [r for r in shadow() if r["kind"] in ("compare", "error")]
    if case == "unported":  # BrokenNative's IR side raises: recorded, legacy result returned
        assert [r["kind"] for r in records] == ["error"]
        return
    assert len(records) == 1 and records[0]["kind"] == "compare", records
    names = [o["name"] for o in records[0]["outputs"]]
    if case == "rms_norm_residual_inplace":  # the in-place legacy path is still seen mutating its inputs
        assert names == ["out0", "out1", "mutated:x", "mutated:residual"] and records[0]["passed"]
    else:
        assert not any(n.startswith("mutated:") for n in names)


class AddsIntoSecond(CustomOp):
    """Unported, two inputs of one shape and a third of another: under inference_mode the
    first two get their snapshot and pristine copies from one stack, the third its own."""

    def forward_native(self, a, b, c):
        b.add_(a)
        return b * c.sum()

    def forward_cpu(self, a, b, c):
        b += a
        return b * c.sum()


class AddsIntoFirst(AddsIntoSecond):
    """Its IR side (forward_native) writes the other input than its legacy side."""

    def forward_native(self, a, b, c):
        a.add_(b)
        return b * c.sum()


@pytest.mark.parametrize("cls, names, passed", [
    (AddsIntoSecond, ["out0", "mutated:b"], True),
    (AddsIntoFirst, ["out0", "mutated:a", "mutated:b"], False),
])
def test_inference_inputs_copied_together_are_told_apart(cls, names, passed, shadow):
    g = torch.Generator().manual_seed(5)
    with torch.inference_mode():
        a, b, c = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.randn(3, generator=g)
        a0, b0, c0 = a.clone(), b.clone(), c.clone()
        out = cls()(a, b, c)
    torch.testing.assert_close(b, b0 + a0, rtol=0, atol=0)  # the legacy effect, on the real inputs only
    assert torch.equal(a, a0) and torch.equal(c, c0)
    torch.testing.assert_close(out, (b0 + a0) * c0.sum(), rtol=0, atol=0)
    (rec,) = shadow("compare")
    assert [o["name"] for o in rec["outputs"]] == names and rec["passed"] is passed, rec


@pytest.mark.parametrize("shape, one_stack", [((4, 8), True), ((3, 7), False)])
def test_inference_copies_start_aligned(shape, one_stack):
    """Inputs copied by one stack share its storage; one of 42 bytes a copy would leave the
    second copy 16-byte misaligned (Triton specialises kernels on alignment): cloned apart."""
    from irshim.compat import shadow as shadow_module

    g = torch.Generator().manual_seed(3)
    with torch.inference_mode():
        tensors = [(n, torch.randn(shape, generator=g).bfloat16()) for n in ("x", "residual")]
        mapping, inputs = shadow_module._copies(tensors)
    storages = set()
    for (name, real, snap, pristine, _), (given_name, given) in zip(inputs, tensors):
        assert name == given_name and real is given and mapping[id(real)] is snap
        for copy in (snap, pristine):
            assert torch.equal(copy, real) and copy.data_ptr() != real.data_ptr() and copy.data_ptr() % 16 == 0
            storages.add(copy.untyped_storage().data_ptr())
    assert len(storages) == (1 if one_stack else 4)
