"""Inference engines behind one interface: base (registry, Backend), load (load_backend), tflite, onnx."""
