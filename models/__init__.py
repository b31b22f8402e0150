"""The annotation models: one class per model (``base.Model``), the registry of them, and their artifacts.

Importing a model module is cheap: torch, onnx and scikit-image are imported only by pull, verify and tests.
"""
