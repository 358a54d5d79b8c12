"""The zoo: architectures the field uses, registered by name with published figures."""

from deploylens.zoo import (  # noqa: F401 - each module registers its variants
    classic,
    cspnet,
    efficientnet,
    ghostnet,
    mobilenet,
    mobileone,
    repvgg,
    resnet,
    shufflenet,
    vovnet,
)
from deploylens.zoo.registry import Published, Variant, create, names, register, resolution_of, variant

__all__ = ["Published", "Variant", "create", "names", "register", "resolution_of", "variant"]
