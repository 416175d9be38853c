"""The simulated device behind `edge_eas quickstart --ssh-demo`, for trying edge_eas without a
board: an OpenSSH sshd per "device" in its own network namespace (`ssh_lab.DeviceLab`). Nothing
else in edge_eas imports this package (.importlinter). The labs the tests and benchmarks add on
top (faults, the arm64 stand-in under qemu, serial consoles, fresh boards) live in tests/labs/.

Public names: ssh_lab.{DeviceLab, SimDevice, have_sshd, base_python, run_tool, descendants,
kill_pids, free_port, DEVICE_LAUNCHER}."""
