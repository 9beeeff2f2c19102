/* The FUSE request hooks of the overlay daemon.
 *
 * pyfuse3 3.5 has no lseek, fallocate or copy_file_range handlers, so SEEK_DATA/SEEK_HOLE,
 * fallocate(2) and copy_file_range(2) would fail on the FUSE overlay, and a request costs ~100 us
 * in Python. So this module defines fuse_session_new, and once the daemon has made the module
 * global, pyfuse3's call reaches this one, which puts handlers of its own in the operations it
 * passes on: read, write, lseek, fallocate and copy_file_range act on the real file, whose
 * descriptor the overlay makes the file handle; opendir, releasedir, getattr, getxattr, and open
 * and release of lower files for reading are answered from what the overlay told
 * (rl_fuse_flag, rl_fuse_cache_attr, rl_fuse_lower_path) and passed on to pyfuse3 for the
 * others. It defines fuse_session_receive_buf too, so that the requests C answers never go
 * through pyfuse3's trio loop, whose round trip alone costs ~40 us.
 *
 * It needs libfuse3's header at build time, never libfuse3 at run time: the library is looked up
 * only when a daemon turns the hooks on.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 34
#include <Python.h> /* Py_BEGIN_ALLOW_THREADS: the daemon's other threads run while we poll */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <linux/openat2.h>

#include "rl_native.h"

typedef struct fuse_session *(*rl_session_new_t)(struct fuse_args *,
    const struct fuse_lowlevel_ops *, size_t, void *);
static rl_session_new_t rl_real_session_new;
static int (*rl_real_receive_buf)(struct fuse_session *, struct fuse_buf *);
static void (*rl_process_buf)(struct fuse_session *, const struct fuse_buf *);
static int (*rl_session_fd)(struct fuse_session *);
static int (*rl_reply_err)(fuse_req_t, int);
static int (*rl_reply_lseek)(fuse_req_t, off_t);
static int (*rl_reply_write)(fuse_req_t, size_t);
static int (*rl_reply_data)(fuse_req_t, struct fuse_bufvec *, enum fuse_buf_copy_flags);
static int (*rl_reply_open)(fuse_req_t, const struct fuse_file_info *);
static ssize_t (*rl_buf_copy)(struct fuse_bufvec *, struct fuse_bufvec *,
                              enum fuse_buf_copy_flags);
static size_t (*rl_buf_size)(const struct fuse_bufvec *);
static struct fuse_lowlevel_ops rl_ops;

/* Per-inode flags the overlay sets (inode numbers are never reused within a mount). */
static unsigned char *rl_flags;
static uint64_t rl_flags_size;

static int rl_flag(fuse_ino_t ino, int flag) {
    return ino < rl_flags_size && (rl_flags[ino] & flag);
}

/* File handles opened here (RL_FUSE_C_FH): the descriptor of a lower file, or the inode of a
   directory. */

/* The kernel may keep the listing of a directory that only lower layers hold across opens
   (such a directory never changes; the overlay turns the flag off when it copies one up),
   and the overlay lists it from one immutable snapshot, so its opens need no Python. A
   directory with an upper part is listed afresh by each open, so that a reader sees a
   snapshot, as on the kernel overlay. */
static void (*rl_py_opendir)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
static void (*rl_py_releasedir)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);

static void rl_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (!rl_flag(ino, RL_FUSE_CACHE_DIR)) {
        rl_py_opendir(req, ino, fi);
        return;
    }
    fi->fh = ino | RL_FUSE_C_FH;
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    rl_reply_open(req, fi);
}

static void rl_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (fi->fh & RL_FUSE_C_FH)
        rl_reply_err(req, 0);
    else
        rl_py_releasedir(req, ino, fi);
}

/* The kernel asks for security.capability before every write(2) to see whether it must
   drop file capabilities: for a file known to have none the answer needs no Python. */
static void (*rl_py_getxattr)(fuse_req_t, fuse_ino_t, const char *, size_t);

static int rl_no_caps(fuse_ino_t ino, const char *name) {
    return rl_flag(ino, RL_FUSE_NO_CAPS) && strcmp(name, "security.capability") == 0;
}

static void rl_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
    if (rl_no_caps(ino, name))
        rl_reply_err(req, ENODATA);
    else
        rl_py_getxattr(req, ino, name, size);
}

/* Attributes of what only lower layers hold (it never changes: a copy-up takes an inode
   out of here). tar and cp stat every file after reading it, and a read makes the kernel
   ask again for the access time: these answers need no Python. */
struct rl_attr {
    struct stat st;
    double timeout;
};
static struct rl_attr **rl_attrs;
static uint64_t rl_attrs_size;
static int (*rl_reply_attr)(fuse_req_t, const struct stat *, double);
static void (*rl_py_getattr)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);

static struct rl_attr *rl_attr_of(fuse_ino_t ino) {
    return ino < rl_attrs_size ? rl_attrs[ino] : NULL;
}

static void rl_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct rl_attr *a = rl_attr_of(ino);
    if (a)
        rl_reply_attr(req, &a->st, a->timeout);
    else
        rl_py_getattr(req, ino, fi);
}

int rl_fuse_cache_attr(uint64_t ino, uint32_t mode, uint64_t nlink, uint32_t uid,
                       uint32_t gid, uint64_t rdev, int64_t size, int64_t blocks,
                       int64_t blksize, int64_t atime_ns, int64_t mtime_ns,
                       int64_t ctime_ns, double timeout) {
    struct rl_attr *a;
    if (ino >= rl_attrs_size) {
        uint64_t n = rl_attrs_size ? rl_attrs_size : 4096;
        struct rl_attr **grown;
        while (n <= ino)
            n *= 2;
        grown = realloc(rl_attrs, n * sizeof *grown);
        if (!grown)
            return -1;
        memset(grown + rl_attrs_size, 0, (n - rl_attrs_size) * sizeof *grown);
        rl_attrs = grown;
        rl_attrs_size = n;
    }
    a = rl_attrs[ino] ? rl_attrs[ino] : calloc(1, sizeof *a);
    if (!a)
        return -1;
    a->st.st_ino = ino;
    a->st.st_mode = mode;
    a->st.st_nlink = nlink;
    a->st.st_uid = uid;
    a->st.st_gid = gid;
    a->st.st_rdev = rdev;
    a->st.st_size = size;
    a->st.st_blocks = blocks;
    a->st.st_blksize = blksize;
    a->st.st_atim.tv_sec = atime_ns / 1000000000;
    a->st.st_atim.tv_nsec = atime_ns % 1000000000;
    a->st.st_mtim.tv_sec = mtime_ns / 1000000000;
    a->st.st_mtim.tv_nsec = mtime_ns % 1000000000;
    a->st.st_ctim.tv_sec = ctime_ns / 1000000000;
    a->st.st_ctim.tv_nsec = ctime_ns % 1000000000;
    a->timeout = timeout;
    rl_attrs[ino] = a;
    return 0;
}

void rl_fuse_forget_attr(uint64_t ino) {
    if (ino < rl_attrs_size && rl_attrs[ino]) {
        free(rl_attrs[ino]);
        rl_attrs[ino] = NULL;
    }
}

/* Read-only opens of files that only lower layers hold: opened and closed here. The overlay
   gives the layer's descriptor and the path below it (rl_fuse_lower_path), walked as the
   overlay walks it (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
   a copy-up moves the open descriptors to the upper file (rl_fuse_copied_up), as it does for
   the ones Python opened. */
struct rl_lower {
    int root;
    char *path;
    int *fds;
    int nfds, cap;
};
static struct rl_lower **rl_lowers;
static uint64_t rl_lowers_size;
static void (*rl_py_open)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
static void (*rl_py_release)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);

static struct rl_lower *rl_lower_of(uint64_t ino, int make) {
    if (ino >= rl_lowers_size) {
        uint64_t n = rl_lowers_size ? rl_lowers_size : 4096;
        struct rl_lower **grown;
        if (!make)
            return NULL;
        while (n <= ino)
            n *= 2;
        grown = realloc(rl_lowers, n * sizeof *grown);
        if (!grown)
            return NULL;
        memset(grown + rl_lowers_size, 0, (n - rl_lowers_size) * sizeof *grown);
        rl_lowers = grown;
        rl_lowers_size = n;
    }
    if (!rl_lowers[ino] && make)
        rl_lowers[ino] = calloc(1, sizeof **rl_lowers);
    return rl_lowers[ino];
}

/* The lower file that an open with these flags reads here, or NULL. */
static struct rl_lower *rl_lower_open(uint64_t ino, int flags) {
    struct rl_lower *l = rl_lower_of(ino, 0);
    if (!l || !l->path || (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC))
        return NULL;
    return l;
}

static void rl_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct rl_lower *l = rl_lower_open(ino, fi->flags);
    int fd;
    if (!l) {
        rl_py_open(req, ino, fi);
        return;
    }
    if (l->nfds == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        int *grown = realloc(l->fds, (size_t)cap * sizeof *grown);
        if (!grown) {
            rl_reply_err(req, ENOMEM);
            return;
        }
        l->fds = grown;
        l->cap = cap;
    }
    fd = rl_openat2(l->root, l->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0,
                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (fd < 0) {
        /* Out of the layer or through a symlink: nothing there, as the overlay answers. */
        rl_reply_err(req, errno == EXDEV ? ENOENT : errno);
        return;
    }
    l->fds[l->nfds++] = fd;
    fi->fh = (uint64_t)fd | RL_FUSE_C_FH;
    fi->keep_cache = 1;
    fi->direct_io = 0;
    rl_reply_open(req, fi);
}

static void rl_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct rl_lower *l;
    int fd = (int)fi->fh, i;
    if (!(fi->fh & RL_FUSE_C_FH)) {
        rl_py_release(req, ino, fi);
        return;
    }
    l = rl_lower_of(ino, 0);
    for (i = 0; l && i < l->nfds; i++) {
        if (l->fds[i] == fd) {
            l->fds[i] = l->fds[--l->nfds];
            break;
        }
    }
    close(fd);
    rl_reply_err(req, 0);
}

int rl_fuse_lower_path(uint64_t ino, int root, const char *path) {
    struct rl_lower *l = rl_lower_of(ino, 1);
    char *copy = strdup(path);
    if (!l || !copy) {
        free(copy);
        return -1;
    }
    free(l->path);
    l->root = root;
    l->path = copy;
    return 0;
}

/* The descriptors opened here read `upper` (the overlay's, open for reading) from now on. */
int rl_fuse_copied_up(uint64_t ino, int upper) {
    struct rl_lower *l = rl_lower_of(ino, 0);
    int i;
    if (!l)
        return 0;
    free(l->path);
    l->path = NULL;
    for (i = 0; i < l->nfds; i++) {
        if (dup3(upper, l->fds[i], O_CLOEXEC) < 0)
            return -1;
    }
    return 0;
}

int rl_fuse_flag(uint64_t ino, int flag, int on) {
    if (ino >= rl_flags_size) {
        uint64_t size = rl_flags_size ? rl_flags_size : 4096;
        unsigned char *grown;
        if (!on)
            return 0;
        while (size <= ino)
            size *= 2;
        grown = realloc(rl_flags, size);
        if (!grown)
            return -1;
        memset(grown + rl_flags_size, 0, size - rl_flags_size);
        rl_flags = grown;
        rl_flags_size = size;
    }
    if (on)
        rl_flags[ino] |= (unsigned char)flag;
    else
        rl_flags[ino] &= (unsigned char)~flag;
    return 0;
}

/* Reads and writes move data between the kernel and the real file without Python (splice
   where the kernel allows it): a request costs ~10 us instead of ~100. */
static void rl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    (void)ino;
    buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    buf.buf[0].fd = (int)fi->fh;
    buf.buf[0].pos = off;
    rl_reply_data(req, &buf, 0);
}
static void rl_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
                         struct fuse_file_info *fi) {
    struct fuse_bufvec out = FUSE_BUFVEC_INIT(rl_buf_size(in));
    ssize_t n;
    (void)ino;
    out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    out.buf[0].fd = (int)fi->fh;
    out.buf[0].pos = off;
    n = rl_buf_copy(&out, in, 0);
    if (n < 0)
        rl_reply_err(req, (int)-n);
    else
        rl_reply_write(req, (size_t)n);
}

static void rl_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                     struct fuse_file_info *fi) {
    off_t res = lseek((int)fi->fh, off, whence);
    (void)ino;
    if (res < 0)
        rl_reply_err(req, errno);
    else
        rl_reply_lseek(req, res);
}
static void rl_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
                         off_t length, struct fuse_file_info *fi) {
    (void)ino;
    rl_reply_err(req, fallocate((int)fi->fh, mode, offset, length) < 0 ? errno : 0);
}
static void rl_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                               struct fuse_file_info *fi_in, fuse_ino_t ino_out,
                               off_t off_out, struct fuse_file_info *fi_out, size_t len,
                               int flags) {
    loff_t in = off_in, out = off_out;
    ssize_t n = copy_file_range((int)fi_in->fh, &in, (int)fi_out->fh, &out, len,
                                (unsigned)flags);
    (void)ino_in;
    (void)ino_out;
    if (n < 0)
        rl_reply_err(req, errno);
    else
        rl_reply_write(req, (size_t)n);
}

/* READ replies splice the real file's pages into /dev/fuse: one copy instead of two
   (pread into a buffer, then writev). pyfuse3 asks for the libfuse defaults only. Not
   SPLICE_MOVE: the kernel would then take pages out of the lower file's page cache. */
static void (*rl_py_init)(void *, struct fuse_conn_info *);

static void rl_init(void *userdata, struct fuse_conn_info *conn) {
    rl_py_init(userdata, conn);
    conn->want |= conn->capable & FUSE_CAP_SPLICE_WRITE;
}

/* Whether the handlers above answer this request without Python. */
static int rl_answers(const struct fuse_buf *buf) {
    const struct fuse_in_header *in = buf->mem;
    const char *arg = (const char *)buf->mem + sizeof *in;
    size_t size = buf->size;
    if ((buf->flags & FUSE_BUF_IS_FD) || size < sizeof *in)
        return 0;
    switch (in->opcode) {
    case FUSE_READ:
        return rl_ops.read == rl_read;
    case FUSE_WRITE:
        return rl_ops.write_buf == rl_write_buf;
    case FUSE_LSEEK:
        return rl_ops.lseek == rl_lseek;
    case FUSE_FALLOCATE:
        return rl_ops.fallocate == rl_fallocate;
    case FUSE_COPY_FILE_RANGE:
        return rl_ops.copy_file_range == rl_copy_file_range;
    case FUSE_GETATTR:
        return rl_ops.getattr == rl_getattr && rl_attr_of(in->nodeid);
    case FUSE_OPEN:
        return rl_ops.open == rl_open && size >= sizeof *in + sizeof(struct fuse_open_in)
            && rl_lower_open(in->nodeid, ((const struct fuse_open_in *)arg)->flags);
    case FUSE_RELEASE:
        return rl_ops.release == rl_release && size >= sizeof *in + sizeof(uint64_t)
            && (((const struct fuse_release_in *)arg)->fh & RL_FUSE_C_FH);
    case FUSE_OPENDIR:
        return rl_ops.opendir == rl_opendir && rl_flag(in->nodeid, RL_FUSE_CACHE_DIR);
    case FUSE_RELEASEDIR:
        return rl_ops.releasedir == rl_releasedir && size >= sizeof *in + sizeof(uint64_t)
            && (((const struct fuse_release_in *)arg)->fh & RL_FUSE_C_FH);
    case FUSE_GETXATTR:
        return rl_ops.getxattr == rl_getxattr
            && size > sizeof *in + sizeof(struct fuse_getxattr_in)
            && ((const char *)buf->mem)[size - 1] == 0
            && rl_no_caps(in->nodeid, arg + sizeof(struct fuse_getxattr_in));
    }
    return 0;
}

/* How long to wait for the next request after one answered here before going back to
   pyfuse3's loop: the requests of a stream (a sequential read, a warm walk) come faster.
   A signal to the daemon's thread ends the wait at once. */
#define RL_LINGER_MS 10

static struct fuse_session *rl_se;

/* pyfuse3's loop calls this once /dev/fuse is readable: the requests the handlers above
   answer are answered here, one after the other while they come, and the first one that
   needs Python is returned; -EINTR (pyfuse3 then waits again) when none came. */
int fuse_session_receive_buf(struct fuse_session *se, struct fuse_buf *buf) {
    struct pollfd next;
    int res, ready;
    if (se != rl_se)
        return rl_real_receive_buf(se, buf);
    for (;;) {
        res = rl_real_receive_buf(se, buf);
        if (res <= 0 || !rl_answers(buf))
            return res;
        rl_process_buf(se, buf);
        next.fd = rl_session_fd(se);
        next.events = POLLIN;
        Py_BEGIN_ALLOW_THREADS
        ready = poll(&next, 1, RL_LINGER_MS);
        Py_END_ALLOW_THREADS
        if (ready <= 0 || !(next.revents & POLLIN))
            return -EINTR;
    }
}

struct fuse_session *fuse_session_new(struct fuse_args *args,
                                      const struct fuse_lowlevel_ops *op, size_t op_size,
                                      void *userdata) {
    memset(&rl_ops, 0, sizeof rl_ops);
    memcpy(&rl_ops, op, op_size < sizeof rl_ops ? op_size : sizeof rl_ops);
    if (!rl_ops.lseek)
        rl_ops.lseek = rl_lseek;
    if (!rl_ops.fallocate)
        rl_ops.fallocate = rl_fallocate;
    if (!rl_ops.copy_file_range)
        rl_ops.copy_file_range = rl_copy_file_range;
    rl_ops.read = rl_read;
    rl_ops.write_buf = rl_write_buf;
    rl_py_init = rl_ops.init;
    if (rl_py_init)
        rl_ops.init = rl_init;
    rl_py_opendir = rl_ops.opendir;
    rl_py_releasedir = rl_ops.releasedir;
    if (rl_py_opendir && rl_py_releasedir) {
        rl_ops.opendir = rl_opendir;
        rl_ops.releasedir = rl_releasedir;
    }
    rl_py_open = rl_ops.open;
    rl_py_release = rl_ops.release;
    if (rl_py_open && rl_py_release) {
        rl_ops.open = rl_open;
        rl_ops.release = rl_release;
    }
    rl_py_getattr = rl_ops.getattr;
    if (rl_py_getattr)
        rl_ops.getattr = rl_getattr;
    rl_py_getxattr = rl_ops.getxattr;
    if (rl_py_getxattr)
        rl_ops.getxattr = rl_getxattr;
    rl_se = rl_real_session_new(args, &rl_ops, sizeof rl_ops, userdata);
    return rl_se;
}

/* Make this module's symbols global so that pyfuse3, loaded next, binds the libfuse
   functions defined above to them; then look the real ones up in libfuse. */
int rl_fuse_hooks_enable(void) {
    Dl_info self;
    void *fuse;
    /* Global before libfuse is loaded: the global scope is searched in load order. */
    if (!dladdr((void *)rl_fuse_hooks_enable, &self) ||
        !dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL)) {
        errno = ENOSYS;
        return -1;
    }
    fuse = dlopen("libfuse3.so.3", RTLD_NOW | RTLD_LOCAL);
    if (!fuse) {
        errno = ENOENT;
        return -1;
    }
    #define RL_REAL(var, name) (*(void **)&(var) = dlvsym(fuse, name, "FUSE_3.0"))
    if (!RL_REAL(rl_real_session_new, "fuse_session_new") ||
        !RL_REAL(rl_real_receive_buf, "fuse_session_receive_buf") ||
        !RL_REAL(rl_process_buf, "fuse_session_process_buf") ||
        !RL_REAL(rl_session_fd, "fuse_session_fd") ||
        !RL_REAL(rl_reply_err, "fuse_reply_err") ||
        !RL_REAL(rl_reply_lseek, "fuse_reply_lseek") ||
        !RL_REAL(rl_reply_write, "fuse_reply_write") ||
        !RL_REAL(rl_reply_data, "fuse_reply_data") ||
        !RL_REAL(rl_reply_open, "fuse_reply_open") ||
        !RL_REAL(rl_buf_copy, "fuse_buf_copy") ||
        !RL_REAL(rl_buf_size, "fuse_buf_size") ||
        !RL_REAL(rl_reply_attr, "fuse_reply_attr")) {
        errno = ENOSYS;
        return -1;
    }
    return 0;
}
