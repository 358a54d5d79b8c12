"""The zoo: architectures the field uses, registered by name with published figures."""

from deploylens.zoo import mobileone, repvgg, resnet  # noqa: F401 - register their variants
from deploylens.zoo.registry import Published, Variant, create, names, register, resolution_of, variant

__all__ = ["Published", "Variant", "create", "names", "register", "resolution_of", "variant"]
