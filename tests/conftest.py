"""Test session setup: 8 simulated CPU devices (sharding tests), and one persistent compilation
cache for the session, shared by the xdist workers and the CLI runs they start as subprocesses
(many tests compile the same small programs; a cached executable is the same binary, so results
do not change). Every program is cached, however fast it compiled, as the CLI does. The cache
starts empty in every session."""

import os
import tempfile

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='fastgen-jax-cache-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# An empty asset cache: tests never read weights a user fetched (python -m fastgen.assets fetch).
os.environ['FASTGEN_CACHE'] = tempfile.mkdtemp(prefix='fastgen-assets-')
