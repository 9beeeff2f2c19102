"""Talking to OCI distribution registries: the client, pull, push and stored credentials."""
