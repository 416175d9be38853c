"""The search space's public import path (`from edge_eas.space import SearchSpace`), kept for
scripts and users; the code lives in `edge_eas.net.space`."""

from edge_eas.net.space import *  # noqa: F401,F403
from edge_eas.net.space import __all__  # noqa: F401
