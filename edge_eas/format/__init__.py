"""The bundle's file formats, shared by the host (export) and the device (runtime): signatures,
int8 weight compression, safetensors reading and writing. numpy only; imports nothing else of
edge_eas, so both sides can depend on it without depending on each other."""
