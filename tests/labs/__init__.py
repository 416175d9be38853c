"""Labs and simulators for the tests and benchmarks (never shipped in the wheel): the SSH lab with
faults (ssh_lab), the arm64 stand-in under qemu (arm64_lab), a board's serial console
(serial_device) and a fresh board to provision (provision_device). The product's own simulated
device, what `edge_eas quickstart --ssh-demo` runs, is edge_eas/sim/ssh_lab.py."""
