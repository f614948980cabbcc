"""ONNX Runtime backend: the torch model exported to ONNX, run by an InferenceSession (see backend.py)."""
