"""The network description both the host and the device build on: the search space and its
architectures, the one sub-network layer description, BN folding into the engines' op list,
slicing a sub-network out of the supernet's state, activations, tasks and preprocessing.
numpy only; imports neither the host (torch, training) nor the device runtime."""
