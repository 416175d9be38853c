"""torch renderings of the network description (edge_eas.net), shared by the host and the torch engine.

`activations` turns the activation registry's names into torch modules (the supernet, its static
sub-networks and the torch engine all use it); `folded` builds a torch module from a FoldedNet
(the eager torch engine, and the graph the ExecuTorch engine lowers).
Every module here imports torch at import time, so the device runtime imports it only lazily,
from the opt-in torch engine; net/ and format/ never import it, and it imports neither the host
nor the device runtime.
"""
