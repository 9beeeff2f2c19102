"""cffi build script for native._native: the C lives in native/*.c and native/rl_native.h.

Compiled with -Wall -Wextra -Werror. RL_NATIVE_SANITIZE=1 builds it under AddressSanitizer and
UndefinedBehaviorSanitizer instead (scripts/sanitize runs the tests of native/ and the FUSE
overlay against that build).
"""
import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))
# Relative to the project, where setuptools runs the build: it refuses absolute source paths.
_SOURCES = ["native/syscalls.c", "native/fuse_hooks.c", "native/seccomp.c", "native/ioctls.c"]
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

# The kernel's constants Python passes to the syscalls, by name: cffi reads their values from the
# headers of _PREAMBLE when it compiles the module, so none is typed by hand.
_CONSTANTS = """
    CLONE_NEWNS CLONE_NEWCGROUP CLONE_NEWUTS CLONE_NEWIPC CLONE_NEWUSER CLONE_NEWPID CLONE_NEWNET
    MS_RDONLY MS_NOSUID MS_NODEV MS_NOEXEC MS_REMOUNT MS_BIND MS_MOVE MS_REC MS_PRIVATE MS_SLAVE
    MS_SHARED MS_NOATIME MS_NODIRATIME MS_RELATIME MNT_FORCE MNT_DETACH
    RENAME_NOREPLACE RENAME_EXCHANGE AT_FDCWD AT_EMPTY_PATH AT_RECURSIVE
    RESOLVE_NO_XDEV RESOLVE_NO_MAGICLINKS RESOLVE_NO_SYMLINKS RESOLVE_BENEATH RESOLVE_IN_ROOT
    CLOSE_RANGE_CLOEXEC
    OPEN_TREE_CLONE OPEN_TREE_CLOEXEC MOVE_MOUNT_F_EMPTY_PATH MOVE_MOUNT_T_EMPTY_PATH MOUNT_ATTR_RDONLY
    PR_SET_NO_NEW_PRIVS PR_SET_PDEATHSIG PR_SET_DUMPABLE PR_SET_KEEPCAPS PR_CAPBSET_DROP
    PR_CAP_AMBIENT PR_CAP_AMBIENT_CLEAR_ALL
    RL_FUSE_CACHE_DIR RL_FUSE_NO_CAPS RL_FUSE_C_FH
    SCMP_ACT_KILL SCMP_ACT_KILL_THREAD SCMP_ACT_KILL_PROCESS SCMP_ACT_TRAP SCMP_ACT_LOG SCMP_ACT_ALLOW
    RL_SCMP_ACT_ERRNO RL_SCMP_ACT_TRACE
    SCMP_CMP_NE SCMP_CMP_LT SCMP_CMP_LE SCMP_CMP_EQ SCMP_CMP_GE SCMP_CMP_GT SCMP_CMP_MASKED_EQ
""".split()
_PREAMBLE = """
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <linux/openat2.h>
#include <seccomp.h>
#include "rl_native.h"
/* The actions that carry a value in their low 16 bits, with none: Python adds it. */
#define RL_SCMP_ACT_ERRNO SCMP_ACT_ERRNO(0)
#define RL_SCMP_ACT_TRACE SCMP_ACT_TRACE(0)
"""

ffibuilder = FFI()
ffibuilder.cdef(_DECLARATIONS + "".join(f"#define {name} ...\n" for name in _CONSTANTS))
ffibuilder.set_source(
    "native._native",
    _PREAMBLE,
    sources=_SOURCES,
    include_dirs=["native", _FUSE_INCLUDE],
    libraries=["dl", "seccomp"],
    extra_compile_args=_FLAGS,
    extra_link_args=["-fsanitize=address,undefined"] if os.environ.get("RL_NATIVE_SANITIZE") else [],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
