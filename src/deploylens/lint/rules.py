"""The field guide's design rules: one small function each, with an id, a rationale,
its source, the targets it applies to and its named options (thresholds with defaults,
configurable in ``[tool.deploylens.lint.options.RULE]``), registered by decorator. A rule
returns findings with a measurable impact (bytes or predicted milliseconds on the target)
wherever one can be computed."""

from __future__ import annotations

import math

from deploylens.capture.ir import FREE_OPS, Graph, Op
from deploylens.cost.records import KernelCost, LayerCost
from deploylens.hardware.targets import Target
from deploylens.lint.registry import EVERY_TARGET, RULES, Applies, Context, Finding, Option, Rule, rule

__all__ = ["EVERY_TARGET", "RULES", "Applies", "Context", "Finding", "Option", "Rule", "rule", "onnx_op_type"]


def _accelerator(target: Target) -> bool:
    return target.device_class in ("gpu", "npu")


ACCELERATORS = Applies("GPUs and NPUs", _accelerator)


def _conv_shape(layer: LayerCost) -> tuple[int, int, int, tuple[int, ...], int] | None:
    """(c_in, c_out, groups, kernel, output spatial size) of a conv layer."""
    if layer.op != "conv" or len(layer.inputs) < 2:
        return None
    x, w, y = layer.inputs[0], layer.inputs[1], layer.outputs[0]
    c_in, c_out = x[1], w[0]
    groups = c_in // w[1] if w[1] else 1
    return c_in, c_out, groups, tuple(w[2:]), math.prod(y[2:])


def _finding(ctx: Context, rule_id: str, severity: str, layer: LayerCost, message: str,
             value: float | None = None, unit: str = "bytes", source: str = "") -> Finding:
    """A finding of ``rule_id`` citing ``source`` (the target's own, where it has one) or the rule's."""
    impact = {"value": value, "unit": unit} if value is not None else None
    return Finding(rule_id, severity, layer.name, message, source or RULES[rule_id].source, impact, layer.module)


# --- ShuffleNetV2's guidelines ------------------------------------------------------------


@rule("G1", "Equal channel width minimizes memory access cost: at fixed FLOPs a 1x1 conv moves the fewest "
      "bytes when c_in == c_out.", "ShuffleNetV2 (ECCV 2018) section 2, Table 1",
      options=(Option("min-ratio", 2.0, "the ratio of a 1x1 conv's wider to narrower channel count from which it is "
                      "reported (info)", minimum=1.0),
               Option("warning-ratio", 4.0, "the ratio from which the finding is a warning", minimum=1.0)))
def g1_equal_width(ctx: Context) -> list[Finding]:
    min_ratio, warning_ratio = ctx.option("G1", "min-ratio"), ctx.option("G1", "warning-ratio")
    findings = []
    for layer in ctx.profile.layers:
        shape = _conv_shape(layer)
        if not shape or shape[2] != 1 or any(k != 1 for k in shape[3]):
            continue
        c1, c2, _, _, hw = shape
        ratio = max(c1, c2) / min(c1, c2)
        if ratio < min_ratio:
            continue
        c = math.sqrt(c1 * c2)  # equal FLOPs with c_in == c_out
        excess = (hw * (c1 + c2) + c1 * c2) - (hw * 2 * c + c * c)
        findings.append(_finding(ctx, "G1", "warning" if ratio >= warning_ratio else "info", layer,
                                 f"1x1 conv {c1}->{c2} (ratio {ratio:.1f}): {excess * ctx.elem:.0f} bytes more "
                                 f"than an equal-FLOPs conv with equal widths", excess * ctx.elem))
    return findings


@rule("G2", "Group convolution raises memory access cost at equal FLOPs.", "ShuffleNetV2 (ECCV 2018) Table 2")
def g2_groups(ctx: Context) -> list[Finding]:
    findings = []
    for layer in ctx.profile.layers:
        shape = _conv_shape(layer)
        if not shape or shape[2] <= 1 or shape[2] == shape[0]:
            continue
        c1, c2, g, _, hw = shape
        # a dense conv with the same FLOPs has sqrt(g)-times narrower activations
        excess = hw * (c1 + c2) * (1 - 1 / math.sqrt(g))
        findings.append(_finding(ctx, "G2", "info", layer, f"grouped conv (g={g}) {c1}->{c2}: {excess * ctx.elem:.0f}"
                                 " bytes more than a dense conv of equal FLOPs", excess * ctx.elem))
    return findings


@rule("G3", "Network fragmentation (many small kernels in a block) reduces parallelism; each kernel pays the "
      "target's launch overhead.", "ShuffleNetV2 (ECCV 2018) Table 3",
      options=(Option("min-kernels", 4, "kernels a block must run to be judged", minimum=1),
               Option("max-launch-share", 0.25, "the share of a block's predicted time its launch overhead may take",
                      minimum=0.0, maximum=1.0)))
def g3_fragmentation(ctx: Context) -> list[Finding]:
    from deploylens.hardware.kernel_classes import kernel_class

    overhead = ctx.target.calibration.overhead_s.kernel if ctx.target.calibration else \
        (ctx.target.spec.overhead.value if ctx.target.spec and ctx.target.spec.overhead else None)
    if not overhead:
        ctx.not_judged["G3"] = (f"{ctx.target.name} has no known per-kernel overhead (no calibration, no catalog "
                                "figure): fragmentation could not be judged")
        return []
    blocks: dict[str, list[KernelCost]] = {}
    for kernel in ctx.profile.kernels:
        module = ctx.layers[kernel.layers[0]].module
        blocks.setdefault(module.rsplit(".", 1)[0] if "." in module else module, []).append(kernel)
    findings = []
    for block, kernels in blocks.items():
        times = [ctx.kernel_ms(k, kernel_class(ctx.layers[k.layers[0]])) or 0.0 for k in kernels]
        total = sum(times)
        launch = len(kernels) * overhead * 1e3
        if (len(kernels) >= ctx.option("G3", "min-kernels") and total
                and launch / total > ctx.option("G3", "max-launch-share")):
            first = ctx.layers[kernels[0].layers[0]]
            findings.append(Finding("G3", "warning", block or first.name,
                                    f"{len(kernels)} kernels in {block or 'the model'}: launch overhead is "
                                    f"{launch / total * 100:.0f}% of its predicted time", RULES["G3"].source,
                                    {"value": launch - overhead * 1e3, "unit": "ms"}, first.module))
    return findings


@rule("G4", "Element-wise operations (activations, adds, bias, shuffles) are memory-bound: small FLOPs, large "
      "time. The ones a deploy toolchain cannot fuse into a conv stay separate kernels.",
      "ShuffleNetV2 (ECCV 2018) Fig. 2, Table 4",
      options=(Option("max-share", 0.2, "the share of the model's fused bytes that standalone element-wise and "
                      "data-movement kernels may move", minimum=0.0, maximum=1.0),))
def g4_elementwise(ctx: Context) -> list[Finding]:
    total = sum(kernel.bytes for kernel in ctx.profile.kernels)
    standalone = [k for k in ctx.profile.kernels if k.kind in ("elementwise", "activation", "data_movement")]
    moved = sum(k.bytes for k in standalone)
    if not total or moved / total < ctx.option("G4", "max-share"):
        return []
    return [Finding("G4", "warning", "(model)", f"{len(standalone)} element-wise / data-movement kernels that no conv "
                    f"absorbs move {moved / total * 100:.0f}% of the fused bytes", RULES["G4"].source,
                    {"value": moved, "unit": "bytes"})]


# --- hardware alignment and kernel mix ------------------------------------------------------


@rule("CH-ALIGN", "Channel counts off the accelerator's alignment are padded: work on the padding is wasted.",
      "the field guide; NVIDIA Tensor Core guide; HiSilicon NNIE documentation",
      applies=Applies("targets with a published channel alignment: NVIDIA GPUs (multiples of 8 in FP16, 16 in "
                      "INT8), npu (4 in / 16 out), this CPU (its SIMD width)",
                      lambda target: target.channel_multiple is not None))
def channel_alignment(ctx: Context) -> list[Finding]:
    multiple_in, multiple_out = ctx.target.channel_multiple
    convs = [layer for layer in ctx.profile.layers if layer.op == "conv" or layer.kind == "linear"]
    classifier = next((layer.name for layer in reversed(convs) if layer.kind == "linear"), None)
    network_input = {t.id for t in ctx.graph.inputs}
    first_ops = {op.name for op in ctx.graph.ops if any(t.id in network_input for t in op.inputs)}
    findings = []
    for layer in convs:
        c_in = layer.inputs[0][1] if layer.op == "conv" else layer.inputs[0][-1]
        c_out = layer.outputs[0][1] if layer.op == "conv" else layer.outputs[0][-1]
        shape = _conv_shape(layer)
        depthwise = shape is not None and shape[2] == shape[0] and shape[0] > 1
        check_in = layer.name not in first_ops and not depthwise
        check_out = layer.name != classifier
        bad_in = check_in and c_in % multiple_in
        bad_out = check_out and c_out % multiple_out
        if not (bad_in or bad_out):
            continue
        padded_in = -(-c_in // multiple_in) * multiple_in if bad_in else c_in
        padded_out = -(-c_out // multiple_out) * multiple_out if bad_out else c_out
        wasted = (layer.macs or 0) * (padded_in * padded_out / (c_in * c_out) - 1)
        findings.append(_finding(ctx, "CH-ALIGN", "warning", layer,
                                 f"channels {c_in}->{c_out} are not multiples of {multiple_in}/{multiple_out}: padded "
                                 f"to {padded_in}->{padded_out}", wasted, "MACs", ctx.target.channel_source))
    return findings


@rule("DW-ACCEL", "Depthwise conv is memory-bound (intensity far below the ridge point) on GPUs and NPUs "
      "without an optimized depthwise path.", "the field guide; G-GhostNet; CSPNet; MobileDets",
      applies=Applies("GPUs and NPUs without an optimized depthwise path (nvidia-gpu, npu, the catalog's NVIDIA "
                      "GPUs and NPUs but the Horizon X3)",
                      lambda target: _accelerator(target) and target.depthwise_optimized is False),
      options=(Option("ridge-fraction", 0.25, "a depthwise conv is reported while its arithmetic intensity is at "
                      "most this fraction of the target's ridge point", minimum=0.0),))
def depthwise_on_accelerator(ctx: Context) -> list[Finding]:
    spec = ctx.target.spec
    ridge = spec.ridge_point(ctx.target.dtype) if spec else None
    findings = []
    for layer in ctx.profile.layers:
        shape = _conv_shape(layer)
        if not shape or shape[2] != shape[0] or shape[0] <= 1:
            continue
        kernel = ctx.kernels.get(layer.kernel or "")
        intensity = kernel.intensity if kernel else layer.intensity
        if ridge and intensity and intensity > ridge * ctx.option("DW-ACCEL", "ridge-fraction"):
            continue
        time = ctx.kernel_ms(kernel, "conv_depthwise") if kernel else None
        findings.append(_finding(ctx, "DW-ACCEL", "warning", layer,
                                 f"depthwise conv at {intensity or 0:.1f} FLOP/byte"
                                 + (f", ridge point {ridge:.0f}" if ridge else "") +
                                 ": memory-bound here; a dense or group conv uses the hardware better",
                                 time, "ms", ctx.target.depthwise_source))
    return findings


def _producer_map(graph: Graph) -> dict[int, Op]:
    return {t.id: op for op in graph.ops if op.op not in FREE_OPS for t in op.outputs}


@rule("EARLY-SEP", "In early, low-channel layers a regular conv is faster on accelerators than a depthwise-"
      "separable pair of the same receptive field.", "MobileDets (CVPR 2021)", applies=ACCELERATORS,
      options=(Option("max-channels", 64, "a separable pair is judged while its depthwise conv has at most this "
                      "many channels", minimum=1),))
def early_separable(ctx: Context) -> list[Finding]:
    findings = []
    layers_by_op = {layer.name: layer for layer in ctx.profile.layers}
    producer = _producer_map(ctx.graph)
    for op in ctx.graph.ops:
        if op.op != "conv" or len(op.inputs) < 2 or any(k != 1 for k in op.inputs[1].shape[2:]):
            continue
        source = op.inputs[0]
        chain = producer.get(source.id)
        while chain is not None and chain.op in ("batch_norm", "relu", "clamp", "hardswish", "silu"):
            chain = producer.get(chain.inputs[0].id)
        if chain is None or chain.op != "conv":
            continue
        dw = layers_by_op[chain.name]
        shape = _conv_shape(dw)
        if not shape or shape[2] != shape[0] or shape[0] > ctx.option("EARLY-SEP", "max-channels"):
            continue
        c_in, _, _, kernel, hw = shape
        pw = layers_by_op[op.name]
        c_out = pw.outputs[0][1]
        pair_ms = [ctx.kernel_ms(ctx.kernels[k.kernel], c) for k, c in ((dw, "conv_depthwise"), (pw, "conv_pointwise"))
                   if k.kernel in ctx.kernels]
        dense_flops = 2 * hw * c_in * c_out * math.prod(kernel)
        dense_bytes = ctx.elem * (hw * (c_in + c_out) + c_in * c_out * math.prod(kernel))
        dense_ms = ctx.ms(dense_flops, dense_bytes, "conv_dense")
        if None in pair_ms or dense_ms is None or dense_ms >= sum(pair_ms):
            continue
        findings.append(_finding(ctx, "EARLY-SEP", "warning", dw,
                                 f"separable {c_in}->{c_out} conv predicted {sum(pair_ms):.3f} ms; a regular "
                                 f"{'x'.join(map(str, kernel))} conv {dense_ms:.3f} ms", sum(pair_ms) - dense_ms, "ms"))
    return findings


@rule("KERNEL-3X3", "Dense 3x3 is the most efficient conv on GPUs (cuDNN / Winograd); larger kernels cost more "
      "per FLOP.", "RepVGG (CVPR 2021) Table 1", applies=Applies("GPUs", lambda target: target.device_class == "gpu"),
      options=(Option("max-kernel", 3, "the largest kernel side not reported", minimum=1),))
def large_kernels(ctx: Context) -> list[Finding]:
    findings = []
    for layer in ctx.profile.layers:
        shape = _conv_shape(layer)
        if not shape or max(shape[3], default=1) <= ctx.option("KERNEL-3X3", "max-kernel"):
            continue
        c_in, c_out, groups, kernel, hw = shape
        klass = "conv_depthwise" if groups == c_in and c_in > 1 else "conv_dense"
        now = ctx.kernel_ms(ctx.kernels[layer.kernel], klass) if layer.kernel in ctx.kernels else None
        flops3 = 2 * hw * c_out * (c_in // groups) * 9
        bytes3 = ctx.elem * (hw * (c_in + c_out) + c_out * (c_in // groups) * 9)
        alternative = ctx.ms(flops3, bytes3, klass)
        saved = now - alternative if now is not None and alternative is not None else None
        findings.append(_finding(ctx, "KERNEL-3X3", "warning", layer,
                                 f"{'x'.join(map(str, kernel))} conv: a 3x3 alternative is predicted "
                                 + (f"{alternative:.3f} ms instead of {now:.3f} ms" if saved is not None else
                                    "cheaper"), saved, "ms"))
    return findings


@rule("DENSE-CONCAT", "Dense concatenation re-reads every earlier feature map at every layer; one-shot aggregation "
      "(OSA) concatenates once.", "VoVNet (CVPRW 2019)",
      options=(Option("min-readers", 3, "concatenations that must read one feature map for it to be reported",
                      minimum=2),))
def dense_concatenation(ctx: Context) -> list[Finding]:
    readers: dict[int, int] = {}
    for op in ctx.graph.ops:
        if op.op == "cat":
            for tensor_id in {t.id for t in op.inputs}:
                readers[tensor_id] = readers.get(tensor_id, 0) + 1
    producer = _producer_map(ctx.graph)
    tensors = {t.id: t for op in ctx.graph.ops for t in op.inputs}
    findings = []
    for tensor_id, count in readers.items():
        if count < ctx.option("DENSE-CONCAT", "min-readers"):
            continue
        tensor = tensors[tensor_id]
        source = producer.get(tensor_id)
        layer = ctx.layers.get(source.name) if source else None
        rereads = (count - 1) * tensor.numel * ctx.elem  # an OSA block reads it once
        if layer is None:
            continue
        findings.append(_finding(ctx, "DENSE-CONCAT", "warning", layer,
                                 f"feature map {list(tensor.shape)} is re-read by {count} concatenations; an OSA "
                                 "block would read it once", rereads))
    return findings


# --- toolchain ------------------------------------------------------------------------


# neutral / aten ops -> the ONNX op type a toolchain's support list names
_ONNX_NAMES = {"conv": "Conv", "conv_transpose": "ConvTranspose", "matmul": "MatMul", "einsum": "Einsum",
               "batch_norm": "BatchNormalization", "layer_norm": "LayerNormalization",
               "group_norm": "GroupNormalization", "instance_norm": "InstanceNormalization", "relu": "Relu",
               "clamp": "Clip", "leaky_relu": "LeakyRelu", "prelu": "PRelu", "hardswish": "HardSwish",
               "hardsigmoid": "HardSigmoid", "sigmoid": "Sigmoid", "tanh": "Tanh", "gelu": "Gelu", "elu": "Elu",
               "softplus": "Softplus", "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
               "sqrt": "Sqrt", "reciprocal": "Reciprocal", "exp": "Exp", "log": "Log", "neg": "Neg", "abs": "Abs",
               "erf": "Erf", "where": "Where", "softmax": "Softmax", "log_softmax": "LogSoftmax",
               "max_pool": "MaxPool", "avg_pool": "AveragePool", "adaptive_avg_pool": "GlobalAveragePool",
               "adaptive_max_pool": "GlobalMaxPool", "resize": "Resize", "cat": "Concat", "pad": "Pad",
               "gather": "Gather", "embedding": "Gather", "expand": "Expand", "cast": "Cast",
               "aten.cumsum": "CumSum", "aten.transpose": "Transpose", "aten.permute": "Transpose",
               "aten.view": "Reshape", "aten._unsafe_view": "Reshape", "aten.expand": "Expand"}


def onnx_op_type(op: Op) -> str | None:
    """The ONNX op type an op exports to (the native name for ONNX graphs)."""
    if not op.native.startswith("aten."):
        return op.native
    if op.op == "view":
        return _ONNX_NAMES.get(op.native)
    return _ONNX_NAMES.get(op.op)


@rule("OP-SUPPORT", "An op outside the target toolchain's published support list falls back to the CPU or fails "
      "to convert.", "vendor op support lists",
      applies=Applies("targets with a published op support list (npu and the catalog's RK3588 NPU: RKNN Toolkit2 "
                      "1.4.0)", lambda target: target.unsupported_ops is not None or target.supported_ops is not None))
def op_support(ctx: Context) -> list[Finding]:
    target = ctx.target
    findings = []
    seen: set[tuple[str, str]] = set()
    for op in ctx.graph.ops:
        onnx_type = onnx_op_type(op)
        if onnx_type is None or onnx_type in ("Identity", "Constant"):
            continue
        unsupported = (target.unsupported_ops is not None and onnx_type in target.unsupported_ops) or \
            (target.supported_ops is not None and onnx_type not in target.supported_ops)
        if unsupported and (op.module, onnx_type) not in seen:
            seen.add((op.module, onnx_type))
            layer = ctx.layers.get(op.name)
            findings.append(Finding("OP-SUPPORT", "error", op.name, f"{onnx_type} is not in {target.name}'s support "
                                    f"list ({target.ops_source})", RULES["OP-SUPPORT"].source, None,
                                    layer.module if layer else op.module))
    return findings


def _branch_chain(tensor: int, producer: dict[int, Op]) -> tuple[list[int], Op | None]:
    """The tensors from one addend back through per-channel affine steps (BN, a constant
    factor, a same-shape view) to a conv's input (and that conv) or to the first tensor
    that is not such a step."""
    chain = [tensor]
    while (op := producer.get(chain[-1])) is not None:
        moving = [t for t in op.inputs if not t.is_state]
        if len(moving) != 1:
            break
        if op.op == "conv":
            return chain + [moving[0].id], op
        first = moving[0] is op.inputs[0]
        if not (op.op in ("mul", "div") or op.op in ("batch_norm", "view") and first) or \
                (op.op == "view" and moving[0].shape != op.outputs[0].shape):
            break
        chain.append(moving[0].id)
    return chain, None


def _branch_sums(graph: Graph) -> list[tuple[Op, int, list[Op]]]:
    """(root add, branch count, convs) of every sum of two or more parallel linear
    branches over one input (conv-BN, conv, BN-only, identity; any arity, any add form,
    constants such as a ``+ 0`` ignored) whose convs could merge (same groups)."""
    producer = {t.id: op for op in graph.ops for t in op.outputs}
    readers: dict[int, list[Op]] = {}
    for op in graph.ops:
        for t in {t.id for t in op.inputs}:
            readers.setdefault(t, []).append(op)

    def inner_sum(tensor: int) -> bool:  # an addition read only by another addition
        source = producer.get(tensor)
        return source is not None and source.op == "add" and [r.op for r in readers.get(tensor, [])] == ["add"]

    def addends(op: Op) -> list[int]:
        return [i for t in op.inputs if not t.is_state
                for i in (addends(producer[t.id]) if inner_sum(t.id) else [t.id])]

    sums = []
    for op in graph.ops:
        if op.op != "add" or any(inner_sum(t.id) for t in op.outputs):
            continue  # only the root of an addition tree
        walks = [_branch_chain(t, producer) for t in addends(op)]
        conv_inputs = {chain[-1] for chain, conv in walks if conv is not None}
        groups: dict[int, list[Op | None]] = {}
        for chain, conv in walks:
            cut = next((t for t in (chain[:-1] if conv else chain) if t in conv_inputs), None)
            groups.setdefault(chain[-1] if cut is None else cut, []).append(conv if cut is None else None)
        for x, convs in groups.items():
            real = [c for c in convs if c is not None]
            groups_of = {c.inputs[0].shape[1] // max(c.inputs[1].shape[1], 1) for c in real}
            identity_fits = len(real) == len(convs) or all(c.inputs[0].shape == c.outputs[0].shape for c in real)
            if len(convs) >= 2 and real and len(groups_of) == 1 and identity_fits:
                sums.append((op, len(convs), real))
    return sums


@rule("PTQ-RISK", "Re-parameterized multi-branch networks quantize badly with post-training INT8 (the merged "
      "weights have wide per-channel ranges).", "RepOpt (ICLR 2023); QARepVGG (AAAI 2023)",
      applies=Applies("targets that deploy INT8: any target with --int8, and the npu (INT8 always)",
                      lambda target: target.int8))
def ptq_risk(ctx: Context) -> list[Finding]:
    findings = []
    for op, branches, convs in _branch_sums(ctx.graph):
        findings.append(_finding(ctx, "PTQ-RISK", "warning", ctx.layers[op.name],
                                 f"{branches} parallel linear branches ({len(convs)} conv) summed over one input: "
                                 "re-parameterized, this block's weights are likely to lose accuracy under "
                                 "per-tensor INT8 PTQ (check `deploylens deploy --int8`'s sensitivity; prefer "
                                 "per-channel or QAT)"))
    return findings
