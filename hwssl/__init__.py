"""hwssl: hardware-aware design-space exploration for Structured Sparsity Learning."""

__version__ = "0.1.0"
