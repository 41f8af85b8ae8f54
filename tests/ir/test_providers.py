"""Provider discovery through the `irshim.providers` entry-point group."""

from __future__ import annotations

import importlib.metadata


import irshim.ir as ir
from irshim.ir import providers


def test_in_tree_kernels_are_an_entry_point():
    names = {e.name: e.value for e in importlib.metadata.entry_points(group=providers.GROUP)}
    assert names.get("kernels") == "irshim.kernels"
    assert "kernels" in ir.load_providers()


class _FakeEntry:
    def __init__(self, name, obj):
        self.name, self.value, self._obj = name, f"fake:{name}", obj

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


def test_callable_entry_points_are_called_and_failures_recorded(monkeypatch, caplog):
    called = []
    entries = [
        _FakeEntry("vendor_ok", lambda: called.append("ok")),
        _FakeEntry("vendor_broken", ImportError("no libvendor.so")),
    ]
    monkeypatch.setattr(providers, "_loaded", None)
    monkeypatch.setattr(providers, "failures", {})
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: entries if group == providers.GROUP else [])
    with caplog.at_level("WARNING", logger=providers.__name__):
        assert providers.load_providers() == ["vendor_ok"]
    assert called == ["ok"]
    assert providers.failures == {"vendor_broken": "ImportError: no libvendor.so"}
    assert "vendor_broken" in caplog.text and "no libvendor.so" in caplog.text
    assert providers.load_providers() == ["vendor_ok"] and called == ["ok"]  # once only
