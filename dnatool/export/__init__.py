"""Deployment artifacts: ONNX (with parity proof), TensorRT plans, Triton model repositories.

Heavy runtimes (onnx, onnxruntime, tensorrt) are imported inside functions so that importing
dnatool or running `dnatool --help` stays light.
"""
