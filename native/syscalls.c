/* The syscalls Python 3.11 lacks, each returning -1 with errno set as the kernel gave it. */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/openat2.h>

#include "rl_native.h"

int rl_unshare(int flags) { return unshare(flags); }
int rl_setns(int fd, int nstype) { return setns(fd, nstype); }
int rl_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data) {
    return mount(source, target, fstype, flags, data);
}
int rl_umount2(const char *target, int flags) { return umount2(target, flags); }
/* os.statvfs has no f_type: the magic number that says which file system a file is on. */
int rl_fstatfs_type(int fd, uint64_t *type) {
    struct statfs st;
    if (fstatfs(fd, &st) < 0)
        return -1;
    *type = (uint64_t)(unsigned long)st.f_type;
    return 0;
}
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
int rl_sethostname(const char *name, size_t len) { return sethostname(name, len); }
/* Through the raw syscall: glibc < 2.28 has no wrapper. */
int rl_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                 unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}
/* capget/capset through the raw syscall with 64-bit masks: glibc has no wrapper and
   libcap is not worth a dependency. Version 3 splits each set in two 32-bit words. */
int rl_capget(int pid, uint64_t *effective, uint64_t *permitted, uint64_t *inheritable) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, pid};
    struct __user_cap_data_struct data[2] = {{0, 0, 0}, {0, 0, 0}};
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -1;
    *effective = (uint64_t)data[1].effective << 32 | data[0].effective;
    *permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
    *inheritable = (uint64_t)data[1].inheritable << 32 | data[0].inheritable;
    return 0;
}
int rl_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {
        {(uint32_t)effective, (uint32_t)permitted, (uint32_t)inheritable},
        {(uint32_t)(effective >> 32), (uint32_t)(permitted >> 32), (uint32_t)(inheritable >> 32)},
    };
    return (int)syscall(SYS_capset, &hdr, data);
}
/* openat2(2) has no glibc wrapper before 2.36 (Debian 12 has 2.36, but not every host does). */
int rl_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how = {.flags = flags, .mode = mode, .resolve = resolve};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}
/* close_range(2): Python 3.11's os.closerange closes one descriptor at a time, and cannot ask
   for CLOSE_RANGE_CLOEXEC. */
int rl_close_range(unsigned int first, unsigned int last, unsigned int flags) {
    return (int)syscall(SYS_close_range, first, last, flags);
}

/* Signal forwarding as a C handler: a Python handler runs only when the interpreter next checks
 * for signals, so one caught just before a blocking waitpid() or read() waited with it. One
 * target per process, as each forwarder has one child to forward to. */
static volatile sig_atomic_t forward_target;

static void forward(int sig) {
    int saved = errno;
    if (forward_target > 0)
        kill((pid_t)forward_target, sig);
    errno = saved;
}

int rl_forward_signal(int sig, int pid) {
    struct sigaction sa = {0};
    forward_target = pid;
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

/* The new mount API (Linux 5.2; mount_setattr 5.12) through raw syscalls: glibc < 2.36 has no
   wrappers, and its <sys/mount.h> clashes with <linux/mount.h>, so the attribute struct is ours. */
int rl_open_tree(int dirfd, const char *path, unsigned int flags) {
    return (int)syscall(SYS_open_tree, dirfd, path, flags);
}
int rl_move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path,
                  unsigned int flags) {
    return (int)syscall(SYS_move_mount, from_dirfd, from_path, to_dirfd, to_path, flags);
}
struct rl_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };
int rl_mount_setattr(int dirfd, const char *path, unsigned int flags, uint64_t attr_set,
                     uint64_t attr_clr) {
    struct rl_mount_attr attr = {.attr_set = attr_set, .attr_clr = attr_clr};
    return (int)syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof attr);
}
