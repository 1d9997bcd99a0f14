"""attnmeta.kernels: the per-thread declaration of how code will differentiate, and what
each layer may then run."""

from __future__ import annotations

import threading

import pytest

from attnmeta import kernels


def test_kernel_declarations_nest_by_union_and_restore():
    assert kernels.fused_attention_allowed() and kernels.native_kernels_allowed()
    with kernels.differentiable(double_backward=True):
        assert not kernels.fused_attention_allowed() and kernels.native_kernels_allowed()
        with kernels.differentiable():  # an inner block cannot drop an outer need
            assert not kernels.fused_attention_allowed()
        with kernels.differentiable(vmap=True):
            assert not kernels.native_kernels_allowed()
        assert kernels.native_kernels_allowed()
    assert kernels.fused_attention_allowed() and kernels.native_kernels_allowed()



def test_export_allows_neither_fast_kernel_and_is_reported():
    assert not kernels.exporting()
    with kernels.differentiable(export=True):
        assert kernels.exporting()
        assert not kernels.fused_attention_allowed() and not kernels.native_kernels_allowed()
        with kernels.differentiable(vmap=True):
            assert kernels.exporting()
    assert not kernels.exporting()


def test_a_declaration_is_restored_when_its_block_raises():
    with pytest.raises(RuntimeError):
        with kernels.differentiable(vmap=True):
            raise RuntimeError("inside")
    assert kernels.native_kernels_allowed()


def test_a_declaration_holds_in_its_own_thread_only():
    seen = {}

    def other_thread():
        seen["fused"] = kernels.fused_attention_allowed()
        with kernels.differentiable(export=True):
            seen["exporting"] = kernels.exporting()

    with kernels.differentiable(double_backward=True, vmap=True):
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert not kernels.fused_attention_allowed() and not kernels.exporting()
    assert seen == {"fused": True, "exporting": True}
