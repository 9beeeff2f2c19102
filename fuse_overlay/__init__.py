"""A FUSE overlay filesystem with the on-disk format of the kernel overlay and fuse-overlayfs."""
