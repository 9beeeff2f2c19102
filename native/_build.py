"""cffi build script for native._native: the C lives in native/*.c and native/rl_native.h.

Compiled with -Wall -Wextra -Werror. RL_NATIVE_SANITIZE=1 builds it under AddressSanitizer and
UndefinedBehaviorSanitizer instead (scripts/sanitize runs the tests of native/ and the FUSE
overlay against that build).
"""
import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))
# Relative to the project, where setuptools runs the build: it refuses absolute source paths.
_SOURCES = ["native/syscalls.c", "native/fuse_hooks.c", "native/seccomp.c"]
_FUSE_INCLUDE = "/usr/include/fuse3"

if not os.path.exists(os.path.join(_FUSE_INCLUDE, "fuse_lowlevel.h")):
    raise SystemExit("native: libfuse3's header is missing: install the Debian package libfuse3-dev")
if not os.path.exists("/usr/include/seccomp.h"):
    raise SystemExit("native: libseccomp's header is missing: install the Debian package libseccomp-dev")

_FLAGS = ["-Wall", "-Wextra", "-Werror"]
if os.environ.get("RL_NATIVE_SANITIZE"):
    _FLAGS += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer", "-g", "-O1"]

with open(os.path.join(_HERE, "rl_native.h"), encoding="utf-8") as f:
    _DECLARATIONS = "".join(line for line in f if not line.startswith("#"))

ffibuilder = FFI()
ffibuilder.cdef(_DECLARATIONS)
ffibuilder.set_source(
    "native._native",
    '#include "rl_native.h"',
    sources=_SOURCES,
    include_dirs=["native", _FUSE_INCLUDE],
    libraries=["dl", "seccomp"],
    extra_compile_args=_FLAGS,
    extra_link_args=["-fsanitize=address,undefined"] if os.environ.get("RL_NATIVE_SANITIZE") else [],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
