"""Images: references, OCI formats, layer extraction and layer tars."""
