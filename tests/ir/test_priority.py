"""Priority: sources and their order, filtering, nesting, restore, IRSHIM_PRIORITY."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import irshim.ir as ir
from irshim.ir import priority
from irshim.ir.errors import ConfigError


def _provide(op, name, offset, **kwargs):
    """Register provider `name` computing x * factor + offset (offset identifies who ran)."""

    def impl(x: Tensor, factor: float) -> Tensor:
        return x * factor + offset

    op.register_impl(name, **kwargs)(impl)


@pytest.fixture
def op3(scale_op):
    """scale op with providers a (+1), b (+2), c (+3)."""
    for offset, name in enumerate("abc", start=1):
        _provide(scale_op, name, offset)
    return scale_op


def ran(op) -> float:
    """Which provider ran for a call on zeros: its offset (0 = native)."""
    return float(op(torch.zeros(1), 1.0))


def test_no_priority_means_native(op3):
    assert op3.get_priority() == ["native"]
    assert ran(op3) == 0


def test_first_provider_accepting_everything_ends_the_list(op3):
    with op3.set_priority(["b", "a", "native"]):
        assert op3.get_priority() == ["b"]
        assert ran(op3) == 2


def test_native_appended_when_no_provider_accepts_everything(scale_op):
    _provide(scale_op, "picky", 5, supports_args=lambda x, factor: factor > 0)
    with scale_op.set_priority(["picky"]):
        assert scale_op.get_priority() == ["picky", "native"]
        assert float(scale_op(torch.zeros(1), 1.0)) == 5
        assert float(scale_op(torch.zeros(1), -1.0)) == 0  # picky refused: native


def test_unsupported_providers_dropped(scale_op):
    _provide(scale_op, "gpu_only", 7, supported=False)
    _provide(scale_op, "portable", 8)
    with scale_op.set_priority(["gpu_only", "portable"]):
        assert scale_op.get_priority() == ["portable"]
    with scale_op.set_priority(["gpu_only"]):
        assert scale_op.get_priority() == ["native"]


def test_nesting_and_restore(op3):
    with op3.set_priority(["a"]):
        with op3.set_priority(["b"]):
            assert ran(op3) == 2
            with op3.set_priority(["c"]):
                assert ran(op3) == 3
            assert ran(op3) == 2
        assert ran(op3) == 1
    assert ran(op3) == 0


def test_restore_on_exception(op3):
    with op3.set_priority(["a"]):
        with pytest.raises(RuntimeError, match="boom"):
            with op3.set_priority(["c"]):
                assert ran(op3) == 3
                raise RuntimeError("boom")
        assert ran(op3) == 1
    assert op3.get_priority() == ["native"]


def test_sources_in_order(op3, monkeypatch):
    priority.set_platform_default(op3.name, ir.device_family(), ["a"])
    assert ran(op3) == 1 and op3.requested_priority()[1].startswith("platform default")
    monkeypatch.setenv(priority.ENV_VAR, f"{op3.name}=b")
    priority.reload_env()
    assert ran(op3) == 2 and op3.requested_priority()[1] == "IRSHIM_PRIORITY"
    ir.set_priority({op3.name: ["c"]})
    assert ran(op3) == 3 and op3.requested_priority()[1] == "ir.set_priority"
    with op3.set_priority(["native"]):
        assert ran(op3) == 0
    assert ran(op3) == 3
    ir.set_priority({op3: None})
    assert ran(op3) == 2


def test_platform_default_of_another_family_ignored(op3):
    other = "xpu" if ir.device_family() != "xpu" else "cpu"
    priority.set_platform_default(op3.name, other, ["a"])
    assert op3.get_priority() == ["native"]


def test_provider_registered_later_is_seen(scale_op):
    ir.set_priority({scale_op.name: ["native"]})
    assert scale_op.get_priority() == ["native"]
    _provide(scale_op, "late", 9)
    with scale_op.set_priority(["late"]):
        assert ran(scale_op) == 9


def test_unknown_provider_in_code_refused(op3):
    with pytest.raises(ValueError, match=r"has no provider\(s\) \['zzz'\]; it has \['a', 'b', 'c', 'native'\]"):
        with op3.set_priority(["a", "zzz"]):
            pass
    with pytest.raises(ValueError, match="no provider"):
        ir.set_priority({op3.name: ["zzz"]})
    with pytest.raises(KeyError, match="no IR op 'no_such_op'"):
        ir.set_priority({"no_such_op": ["native"]})
    with pytest.raises(TypeError, match="not the string"):
        with op3.set_priority("a"):
            pass
    with pytest.raises(ValueError, match="listed twice"):
        with op3.set_priority(["a", "a"]):
            pass


@pytest.mark.parametrize(
    "value, detail",
    [
        ("rms_norm", "is not 'op=providers'"),
        ("rms_norm=triton;rms_norm=native", "listed twice"),
        ("rms_norm=", "bad provider name"),
        ("rms_norm=tri ton", "bad provider name"),
        ("RMS=native", "is not 'op=providers'"),
        ("rms_norm=native,native", "lists a provider twice"),
    ],
)
def test_malformed_env_value(monkeypatch, value, detail):
    monkeypatch.setenv(priority.ENV_VAR, value)
    with pytest.raises(ConfigError) as info:
        priority.reload_env()
    message = str(info.value)
    assert message.startswith(f"IRSHIM_PRIORITY={value!r} is invalid")
    assert detail in message and "Accepted: 'op=provider,provider;op=provider'" in message


def test_env_parsing_tolerates_spaces_and_empty_entries():
    assert priority.parse_priority(" rms_norm = triton , native ; ; silu_and_mul=native;") == {
        "rms_norm": ["triton", "native"],
        "silu_and_mul": ["native"],
    }


def test_env_provider_unknown_to_op_is_an_error_naming_the_variable(op3, monkeypatch):
    value = f"{op3.name}=a,zzz"
    monkeypatch.setenv(priority.ENV_VAR, value)
    priority.reload_env()
    with pytest.raises(ConfigError) as info:
        op3(torch.zeros(1), 1.0)
    message = str(info.value)
    assert f"IRSHIM_PRIORITY={value!r} is invalid" in message
    assert "no provider(s) ['zzz']" in message and "['a', 'b', 'c', 'native']" in message


def test_env_naming_an_op_not_yet_registered_is_fine_until_it_exists(monkeypatch, fresh_name):
    monkeypatch.setenv(priority.ENV_VAR, f"{fresh_name}=late")
    priority.reload_env()  # no error: the op does not exist yet

    @ir.register_op(name=fresh_name)
    def f(x: Tensor) -> Tensor:
        return x

    @f.register_impl("late")
    def late(x: Tensor) -> Tensor:
        return x + 1

    assert f.get_priority() == ["late"]
    assert float(f(torch.zeros(1))) == 1
