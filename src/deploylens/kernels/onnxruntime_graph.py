"""The kernels ONNX Runtime runs on this CPU beyond a model's own, read from the graph
its optimizer produces for this CPU (saved with ``optimized_model_filepath``)."""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

from deploylens.cost.records import KernelCost
from deploylens.kernels.runtimes import SHAPE_KIND
from deploylens.onnx_runtime import export_for_runtime, session

NCHWC = "com.microsoft.nchwc"


def nchwc_reorders(optimized: str) -> list[tuple[str, str]]:
    """(op type, the plain NCHW tensor's name) of every layout reorder in an optimized
    graph saved at ``optimized``."""
    import onnx

    return [(node.op_type, node.input[0] if node.op_type == "ReorderInput" else node.output[0])
            for node in onnx.load(optimized).graph.node
            if node.domain == NCHWC and node.op_type in ("ReorderInput", "ReorderOutput")]


def shape_arithmetic(optimized: str) -> list:
    """The nodes of an optimized graph (saved at ``optimized``) that compute on tensor
    shapes, not on data: Shape nodes and whatever takes only their results and constants.
    A dynamic-batch export computes a view's sizes so (a channel shuffle's reshape), and
    each runs as a kernel of its own."""
    import onnx

    graph = onnx.load(optimized).graph
    data, shapes, nodes = {port.name for port in graph.input}, set(), []
    for node in graph.node:  # topologically sorted, as ONNX requires
        inputs = [name for name in node.input if name]
        if node.op_type == "Shape" or (any(n in shapes for n in inputs) and not any(n in data for n in inputs)):
            shapes.update(node.output)
            nodes.append(node)
        else:
            data.update(node.output)
    return nodes


def shape_arithmetic_nodes(optimized: str) -> list[str]:
    """Op types of the shape-arithmetic nodes of :func:`shape_arithmetic`."""
    return [node.op_type for node in shape_arithmetic(optimized)]


def reorder_kernels(optimized: str, numels: dict[str, int], elem: int = 4) -> list[KernelCost]:
    """The layout reorders of an optimized graph saved at ``optimized`` as copy kernels,
    each reading and writing its plain tensor (``numels``: elements by tensor name; a
    reorder of a tensor not in it is incomplete)."""
    kernels = []
    for op_type, plain in nchwc_reorders(optimized):
        numel = numels.get(plain, 0)
        kernels.append(KernelCost(f"{op_type}:{plain}", "data_movement", [], 0, 0, numel * elem, numel * elem, 0.0,
                                  bool(numel)))
    return kernels


def added_kernels_in(model: Any, optimized: str, input_shapes: list[tuple[int, ...]], elem: int = 4
                     ) -> list[KernelCost]:
    """The kernels that ONNX Runtime's optimized graph of the ONNX ``model`` (saved at
    ``optimized``) runs beyond the model's own:

    * layout copies: its optimizer runs convs in a channel-blocked layout (NCHWc) and puts
      a ReorderInput / ReorderOutput wherever such a tensor meets an op without a blocked
      kernel (a Slice, a Concat, an SE block's Mul); each reads and writes its tensor;
    * shape arithmetic (kind ``SHAPE_KIND``): the nodes of :func:`shape_arithmetic_nodes`,
      each a kernel that moves nothing."""
    from deploylens.capture.onnx_shapes import tensor_shapes

    _, shapes = tensor_shapes(model, [(shape, "float") for shape in input_shapes], [])
    added = reorder_kernels(optimized, {name: math.prod(shape) for name, (shape, _) in shapes.items()}, elem)
    added += [KernelCost(f"{op_type}:shape{index}", SHAPE_KIND, [], 0, 0, 0, 0, 0.0, True)
              for index, op_type in enumerate(shape_arithmetic_nodes(optimized))]
    return added


def as_onnx(model: Any, inputs: list, workdir: str):
    """``model`` as an ONNX model: an ``nn.Module`` exported as every runtime backend runs
    it (:func:`deploylens.onnx_runtime.export_for_runtime`), an ONNX model as it is."""
    import onnx
    import torch

    if isinstance(model, torch.nn.Module):
        path = os.path.join(workdir, "model.onnx")
        export_for_runtime(model, inputs, path)
        return onnx.load(path)
    return model


def added_kernels(model: Any, input_shapes: list[tuple[int, ...]], threads: int, elem: int = 4) -> list[KernelCost]:
    """The kernels ONNX Runtime runs on this CPU for ``model`` (an ``nn.Module`` or ONNX
    model) beyond the model's own (see :func:`added_kernels_in`)."""
    import torch

    with tempfile.TemporaryDirectory(prefix="deploylens-added-") as workdir:
        onnx_model = as_onnx(model, [torch.randn(shape) for shape in input_shapes], workdir)
        optimized = os.path.join(workdir, "optimized.onnx")
        session(onnx_model.SerializeToString(), threads, optimized=optimized)
        return added_kernels_in(onnx_model, optimized, input_shapes, elem)
