"""Cost models: analytic MACs/params, latency, calibration, measurement store."""
