"""Architecture generation that the host and the device both run: the numpy ArchGenerator
(one forward pass from a task and a budget to choice logits, then budget repair). numpy only."""
