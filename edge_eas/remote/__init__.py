"""Reaching devices: SSH (paramiko), the benchmark harness, fleets, serial consoles."""
