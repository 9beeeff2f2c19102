"""rl: a rootless container runtime."""

__version__ = "0.1.0"
