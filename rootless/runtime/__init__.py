"""The container runtime: from an image and options to a running process."""
