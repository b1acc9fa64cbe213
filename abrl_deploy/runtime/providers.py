"""ONNX Runtime's execution providers of each ``ort-*`` backend, in order of preference.

Its own module, with no imports: the backend table (backends.py) and the runner
(onnxruntime.py) both read it, and neither imports the other at module level.
"""

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
ORT_PROVIDERS = {
    "ort-cpu": (CPU,),
    "ort-cuda": (CUDA, CPU),
    "ort-trt": (TRT, CUDA, CPU),
}
