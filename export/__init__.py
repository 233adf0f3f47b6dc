"""fvdeploy.export: ONNX and TensorRT export bundles."""
