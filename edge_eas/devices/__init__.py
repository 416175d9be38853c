"""What the host knows about devices: target profiles (targets/*.toml), board detection for the
generic `jetson` / `raspberry-pi` targets, and a device's roofline hardware figures (which the
latency model's prior reads on both sides)."""
