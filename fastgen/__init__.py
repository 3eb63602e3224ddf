"""fastgen: turn slow diffusion and flow models into 1-4-step generators, in JAX."""

__version__ = '0.1.0'
