"""The compression lab (issue 8): every variant of a finished run is a child run of it.

export.py (ONNX export with a parity check), quantize.py (ONNX Runtime int8), measure.py
(figures, the comparison table, what a variant forgot), package.py (the deploy zip);
prune.py and distil.py (structured / unstructured pruning, knowledge distillation).
See docs/compression.md.
"""
from engine.compress.export import ExportError, export_run
from engine.compress.measure import compare_rows, damage, test_outputs
from engine.compress.package import build_package, read_package
from engine.compress.quantize import QuantizeError, quantize_run

__all__ = ["ExportError", "export_run", "compare_rows", "damage", "test_outputs", "build_package",
           "read_package", "QuantizeError", "quantize_run"]
