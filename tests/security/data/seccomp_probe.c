/* Run only inside a container: it makes calls that need privileges (each with arguments that
 * change nothing, even where they are allowed: lengths too long, paths that do not exist).
 *
 * Makes each syscall named on the command line (all of its table without arguments) in a child
 * of its own and prints "NAME RESULT": "ok" or the errno's name. The arguments are chosen so
 * that a call the filter lets through fails harmlessly with another errno (EBADF, EINVAL,
 * EFAULT...) or does nothing lasting; what is blocked says EPERM (ENOSYS for clone3). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLONE_NEWUSER_ 0x10000000L
#define SIGCHLD_ 17L

struct call {
    const char *name;
    long nr;
    long a[6];
};

static const struct call calls[] = {
    {"getpid", SYS_getpid, {0}},
    {"keyctl", SYS_keyctl, {0 /* GET_KEYRING_ID */, -3 /* session */, 0}},
    {"add_key", SYS_add_key, {(long)"user", (long)"rl-probe", 0, 0, 0}},
    {"request_key", SYS_request_key, {(long)"user", (long)"rl-probe", 0, 0}},
    {"bpf", SYS_bpf, {999, 0, 0}},
    {"userfaultfd", SYS_userfaultfd, {1 /* UFFD_USER_MODE_ONLY */}},
    {"unshare_user", SYS_unshare, {CLONE_NEWUSER_}},
    {"unshare_ns", SYS_unshare, {0x00020000L}},
    {"clone_newuser", SYS_clone, {CLONE_NEWUSER_ | SIGCHLD_, 0, 0, 0, 0}},
    {"clone_plain", SYS_clone, {SIGCHLD_, 0, 0, 0, 0}},
    {"clone3", SYS_clone3, {0, 0}},
    {"setns", SYS_setns, {-1, 0}},
    {"mount", SYS_mount, {(long)"none", (long)"/nonexistent-rl", (long)"tmpfs", 0, 0}},
    {"umount2", SYS_umount2, {(long)"/nonexistent-rl", 0}},
    {"pivot_root", SYS_pivot_root, {(long)"/nonexistent-rl", (long)"/nonexistent-rl"}},
    {"fsopen", SYS_fsopen, {(long)"tmpfs", 0}},
    {"open_tree", SYS_open_tree, {-1, (long)"/nonexistent-rl", 0}},
    {"move_mount", SYS_move_mount, {-1, (long)"", -1, (long)"", 0}},
    {"kcmp", SYS_kcmp, {0, 0, 99, 0, 0}},
    {"pidfd_getfd", SYS_pidfd_getfd, {-1, 0, 0}},
    {"process_madvise", SYS_process_madvise, {-1, 0, 0, 0, 0}},
    {"process_vm_readv", SYS_process_vm_readv, {0, 0, 0, 0, 0, 0}},
    {"ptrace", SYS_ptrace, {-1, 0, 0, 0}},
    {"perf_event_open", SYS_perf_event_open, {0, 0, -1, -1, 0}},
    {"init_module", SYS_init_module, {0, 0, (long)""}},
    {"delete_module", SYS_delete_module, {(long)"rl_probe_none", 0}},
    {"reboot", SYS_reboot, {0, 0, 0, 0}},
    {"acct", SYS_acct, {(long)"/nonexistent-rl"}},
    {"swapoff", SYS_swapoff, {(long)"/nonexistent-rl"}},
    {"syslog", SYS_syslog, {10 /* SIZE_BUFFER */, 0, 0}},
    {"settimeofday", SYS_settimeofday, {-1 /* EFAULT */, 0}},
    {"clock_settime", SYS_clock_settime, {0, 0}},
    {"sethostname", SYS_sethostname, {(long)"x", 65 /* too long */}},
    {"setdomainname", SYS_setdomainname, {(long)"x", 65}},
    {"chroot", SYS_chroot, {(long)"/nonexistent-rl"}},
    {"iopl", SYS_iopl, {0}},
    {"ioperm", SYS_ioperm, {0, 0, 0}},
    {"set_mempolicy", SYS_set_mempolicy, {0, 0, 0}},
    {"get_mempolicy", SYS_get_mempolicy, {0, 0, 0, 0, 0}},
    {"move_pages", SYS_move_pages, {0, 0, 0, 0, 0, 0}},
    {"personality_ok", SYS_personality, {0xffffffffL}},
    {"personality_norandom", SYS_personality, {0x0040000L}},
    {"socket_vsock", SYS_socket, {40 /* AF_VSOCK */, SOCK_STREAM, 0}},
    {"socket_unix", SYS_socket, {AF_UNIX, SOCK_STREAM, 0}},
    {"open_by_handle_at", SYS_open_by_handle_at, {-1, 0, 0}},
    {"lookup_dcookie", SYS_lookup_dcookie, {0, 0, 0}},
    {"quotactl", SYS_quotactl, {0, 0, 0, 0}},
    {"fanotify_init", SYS_fanotify_init, {0, 0}},
    {"kexec_load", SYS_kexec_load, {0, 0, 0, 0x7fff0000L /* no such arch */}},
    {"uselib", SYS_uselib, {0}},
    {"mknodat_fifo", SYS_mknodat, {-100, (long)"/nonexistent-rl/fifo", 0010644, 0}},
    {"io_uring_setup", SYS_io_uring_setup, {0, 0}},
};

static void probe(const struct call *c) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        errno = 0;
        long r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);
        if (r == 0 && (c->nr == SYS_clone))
            _exit(0); /* the clone's child */
        int e = errno;
        printf("%s %s\n", c->name, r < 0 ? strerrorname_np(e) : "ok");
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status))
        printf("%s signal%d\n", c->name, WTERMSIG(status));
}

int main(int argc, char **argv) {
    size_t n = sizeof(calls) / sizeof(calls[0]);
    for (size_t i = 0; i < n; i++) {
        int wanted = argc < 2;
        for (int j = 1; j < argc; j++)
            wanted |= strcmp(argv[j], calls[i].name) == 0;
        if (wanted)
            probe(&calls[i]);
    }
    return 0;
}
