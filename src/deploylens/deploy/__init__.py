"""Deploy transforms, each checked numerically: BN fusion, structural
re-parameterization, ONNX export, INT8 post-training quantization and its sensitivity."""

from deploylens.deploy.onnx_steps import Sensitivity, export_onnx, quantize, sensitivity
from deploylens.deploy.transforms import check_equivalence, fuse_bn, reparameterize

__all__ = ["Sensitivity", "check_equivalence", "export_onnx", "fuse_bn", "quantize", "reparameterize",
           "sensitivity"]
