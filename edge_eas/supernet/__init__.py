"""Weight-sharing supernet, its dynamic ops, and extracted static sub-networks."""

from .model import SoftArch, Supernet
from .static import SubNet, recalibrate_bn

__all__ = ["SoftArch", "SubNet", "Supernet", "recalibrate_bn"]
