"""Inference engines behind one interface: base (registry, Backend, load_backend), tflite, onnx."""
