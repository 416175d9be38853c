"""Weight-sharing supernet, its dynamic ops, and extracted static sub-networks."""

from edge_eas.supernet.model import SoftArch, Supernet
from edge_eas.supernet.static import SubNet, recalibrate_bn

__all__ = ["SoftArch", "SubNet", "Supernet", "recalibrate_bn"]
