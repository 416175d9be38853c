"""Simulated devices, for trying edge_eas without a board and for the test suite: an OpenSSH
sshd per "device" in its own network namespace (`ssh_lab.DeviceLab`, what `quickstart
--ssh-demo` runs) and a Debian arm64 root file system under qemu user emulation
(`arm64_lab.Arm64Lab`). Nothing else in edge_eas imports this package except the quick start.

Public names: ssh_lab.{DeviceLab, SimDevice, have_sshd, leftovers, descendants, kill_pids,
run_tool, DEVICE_LAUNCHER} and arm64_lab.{Arm64Lab, Arm64Unavailable, chroot_pids, leftovers,
mounts_under, script_path, shipped_target}."""
