"""cffi build script for native._native: the syscalls Python 3.11 lacks."""
from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(
    """
    int rl_unshare(int flags);
    int rl_setns(int fd, int nstype);
    int rl_mount(const char *source, const char *target, const char *fstype,
                 unsigned long flags, const char *data);
    int rl_umount2(const char *target, int flags);
    int rl_pivot_root(const char *new_root, const char *put_old);
    int rl_prctl(int option, unsigned long arg2, unsigned long arg3,
                 unsigned long arg4, unsigned long arg5);
    int rl_mknod_whiteout(int dirfd, const char *name);
    """
)

ffibuilder.set_source(
    "native._native",
    r"""
    #define _GNU_SOURCE
    #include <sched.h>
    #include <sys/mount.h>
    #include <sys/prctl.h>
    #include <sys/stat.h>
    #include <sys/syscall.h>
    #include <sys/sysmacros.h>
    #include <fcntl.h>
    #include <unistd.h>

    int rl_unshare(int flags) { return unshare(flags); }
    int rl_setns(int fd, int nstype) { return setns(fd, nstype); }
    int rl_mount(const char *source, const char *target, const char *fstype,
                 unsigned long flags, const char *data) {
        return mount(source, target, fstype, flags, data);
    }
    int rl_umount2(const char *target, int flags) { return umount2(target, flags); }
    int rl_pivot_root(const char *new_root, const char *put_old) {
        return (int)syscall(SYS_pivot_root, new_root, put_old);
    }
    int rl_prctl(int option, unsigned long arg2, unsigned long arg3,
                 unsigned long arg4, unsigned long arg5) {
        return prctl(option, arg2, arg3, arg4, arg5);
    }
    /* An overlay whiteout: a 0/0 character device, which the kernel lets an
       unprivileged process create (Linux >= 5.8). */
    int rl_mknod_whiteout(int dirfd, const char *name) {
        return mknodat(dirfd, name, S_IFCHR | 0, makedev(0, 0));
    }
    """,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
