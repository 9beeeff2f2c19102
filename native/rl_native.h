/* Every function of native._native, declared once: the C files include it, and native/_build.py
 * hands it to cffi's cdef without its preprocessor lines (cdef reads declarations only). */
#ifndef RL_NATIVE_H
#define RL_NATIVE_H
#include <stddef.h>
#include <stdint.h>

/* Per-inode flags of the FUSE hooks (rl_fuse_flag), and the bit of the file handles they open
   themselves (a directory's handle is its inode). Python reads them through cffi. */
#define RL_FUSE_CACHE_DIR 1
#define RL_FUSE_NO_CAPS 2
#define RL_FUSE_C_FH (1ULL << 62)

int rl_unshare(int flags);
int rl_setns(int fd, int nstype);
int rl_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data);
int rl_umount2(const char *target, int flags);
int rl_fstatfs_type(int fd, uint64_t *type);
int rl_pivot_root(const char *new_root, const char *put_old);
int rl_prctl(int option, unsigned long arg2, unsigned long arg3,
             unsigned long arg4, unsigned long arg5);
int rl_mknod_whiteout(int dirfd, const char *name);
int rl_capget(int pid, uint64_t *effective, uint64_t *permitted, uint64_t *inheritable);
int rl_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable);
int rl_sethostname(const char *name, size_t len);
int rl_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                 unsigned int flags);
int rl_fuse_hooks_enable(void);
int rl_fuse_flag(uint64_t ino, int flag, int on);
int rl_fuse_cache_attr(uint64_t ino, uint32_t mode, uint64_t nlink, uint32_t uid,
                       uint32_t gid, uint64_t rdev, int64_t size, int64_t blocks,
                       int64_t blksize, int64_t atime_ns, int64_t mtime_ns,
                       int64_t ctime_ns, double timeout);
void rl_fuse_forget_attr(uint64_t ino);
int rl_fuse_lower_path(uint64_t ino, int root, const char *path);
int rl_fuse_copied_up(uint64_t ino, int upper);
int rl_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
int rl_close_range(unsigned int first, unsigned int last, unsigned int flags);
int rl_forward_signal(int sig, int pid);
int rl_open_tree(int dirfd, const char *path, unsigned int flags);
int rl_move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path,
                  unsigned int flags);
int rl_mount_setattr(int dirfd, const char *path, unsigned int flags, uint64_t attr_set,
                     uint64_t attr_clr);
void *rl_seccomp_new(uint32_t default_action);
void rl_seccomp_release(void *ctx);
int rl_seccomp_arch_add(void *ctx, const char *name);
int rl_seccomp_syscall(const char *name);
int rl_seccomp_rule(void *ctx, uint32_t action, int syscall_nr, unsigned int count,
                    const uint32_t *index, const uint32_t *op, const uint64_t *a,
                    const uint64_t *b);
int rl_seccomp_export(void *ctx, int fd);
int rl_seccomp_install(const void *program, size_t size);
int rl_ficlone(int dst_fd, int src_fd);
int rl_link_up(const char *ifname);

#endif
