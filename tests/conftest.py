"""Test session setup: 8 simulated CPU devices (sharding tests), float32 matmuls at full precision."""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
