/* Seccomp filters: libseccomp compiles a profile's rules to a BPF program (rl keeps the program
 * in the container's spec), and rl_seccomp_install loads such a program into the calling thread.
 * libseccomp's functions return a negative errno; these set errno and return -1 like a syscall. */
#define _GNU_SOURCE
#include <errno.h>
#include <seccomp.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "rl_native.h"

static int fail(int rc) {
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

void *rl_seccomp_new(uint32_t default_action) {
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (ctx == NULL)
        errno = EINVAL;
    return ctx;
}

void rl_seccomp_release(void *ctx) { seccomp_release(ctx); }

int rl_seccomp_arch_add(void *ctx, const char *name) {
    uint32_t token = seccomp_arch_resolve_name(name);
    if (token == 0) {
        errno = EINVAL;
        return -1;
    }
    int rc = seccomp_arch_add(ctx, token);
    return rc == -EEXIST ? 0 : fail(rc);
}

int rl_seccomp_syscall(const char *name) { return seccomp_syscall_resolve_name(name); }

int rl_seccomp_rule(void *ctx, uint32_t action, int syscall_nr, unsigned int count,
                    const uint32_t *index, const uint32_t *op, const uint64_t *a,
                    const uint64_t *b) {
    struct scmp_arg_cmp cmp[6];
    if (count > 6) {
        errno = EINVAL;
        return -1;
    }
    for (unsigned int i = 0; i < count; i++) {
        cmp[i].arg = index[i];
        cmp[i].op = (enum scmp_compare)op[i];
        cmp[i].datum_a = a[i];
        cmp[i].datum_b = b[i];
    }
    return fail(seccomp_rule_add_array(ctx, action, syscall_nr, count, cmp));
}

int rl_seccomp_export(void *ctx, int fd) { return fail(seccomp_export_bpf(ctx, fd)); }

int rl_seccomp_install(const void *program, size_t size) {
    struct sock_fprog prog = {
        .len = (unsigned short)(size / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)program,
    };
    if (size % sizeof(struct sock_filter) != 0 || size / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}
