/* The ioctls rl makes, by the kernel headers' names: FICLONE for copy-up, SIOCGIFFLAGS and
 * SIOCSIFFLAGS for the loopback of a new network namespace. Apart from syscalls.c, whose
 * <sys/mount.h> the kernel's <linux/fs.h> conflicts with. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/fs.h>

#include "rl_native.h"

/* Share the extents of src_fd with dst_fd (reflink): -1 and errno where the file system cannot. */
int rl_ficlone(int dst_fd, int src_fd) {
    return ioctl(dst_fd, FICLONE, src_fd);
}

/* Bring the network interface `ifname` up, as `ip link set ifname up` does. */
int rl_link_up(const char *ifname) {
    struct ifreq ifr;
    int s, ret, saved;

    if (strlen(ifname) >= IFNAMSIZ) {
        errno = ENAMETOOLONG;
        return -1;
    }
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ret = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (ret == 0) {
        ifr.ifr_flags |= IFF_UP;
        ret = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    saved = errno;
    close(s);
    errno = saved;
    return ret;
}
