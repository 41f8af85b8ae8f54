"""Fixtures shared by the compat tests."""

from __future__ import annotations

import pytest
import torch.nn as nn

from irshim.compat import auto as _auto, custom_op as _custom_op


@pytest.fixture(autouse=True)
def _cpu_platform(request, monkeypatch):
    """In every test not marked `cuda`, compat sees a CPU machine: layers bind their
    forward_cpu and automatic ops offer it as a provider. The tests build layers on CPU
    tensors, and a class that defines forward_cpu alone (a wrong epsilon, say) would
    otherwise bind forward_cuda on a GPU machine (ten tests failed there). The IR ops keep
    the real platform's priority; their Triton providers refuse CPU tensors."""
    if request.node.get_closest_marker("cuda") is None:
        for module in (_custom_op, _auto):
            monkeypatch.setattr(module, "device_family", lambda: "cpu")


@pytest.fixture
def foreign_base() -> type:
    """A fresh stand-in for vllm.model_executor.custom_op.CustomOp (same protocol, no irshim):
    binds forward_cpu, whose default runs forward_native."""

    class ForeignCustomOp(nn.Module):
        op_registry: dict = {}

        def __init__(self):
            super().__init__()
            self._forward_method = self.dispatch_forward()

        def forward(self, *args, **kwargs):
            return self._forward_method(*args, **kwargs)

        def forward_native(self, *args, **kwargs):
            raise NotImplementedError

        def forward_cuda(self, *args, **kwargs):
            raise NotImplementedError

        def forward_hip(self, *args, **kwargs):
            return self.forward_cuda(*args, **kwargs)

        def forward_cpu(self, *args, **kwargs):
            return self.forward_native(*args, **kwargs)

        def forward_xpu(self, *args, **kwargs):
            return self.forward_native(*args, **kwargs)

        def forward_tpu(self, *args, **kwargs):
            return self.forward_native(*args, **kwargs)

        def forward_oot(self, *args, **kwargs):
            return self.forward_native(*args, **kwargs)

        def dispatch_forward(self):
            return self.forward_cpu

        @classmethod
        def register(cls, name):
            def deco(op_cls):
                op_cls.name = name
                cls.op_registry[name] = op_cls
                return op_cls
            return deco

    return ForeignCustomOp
