"""The soft-migration shim from CustomOp layers to IR ops. Knows ir, never kernels."""
