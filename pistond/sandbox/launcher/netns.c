/*
 * Network namespaces: loopback up in a new one, and the clean check that lets the daemon reuse
 * a box slot's namespace for its next stage.
 *
 * Jobs run without capabilities, so they cannot add interfaces or routes, change sysctls or
 * filters. What they can leave behind is traffic and sockets: counters on lo, TIME_WAIT
 * connections (which need traffic), and sockets kept in flight in Unix sockets. So a namespace
 * is clean when no interface has carried a packet at all since it was made,
 * and no Unix socket exists in it. PID 1 checks this after every process of the sandbox is
 * gone; anything else makes the daemon replace the namespace.
 */
#define _GNU_SOURCE
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "launcher.h"

int loopback_up(void)
{
    struct ifreq request;
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), done = -1;
    if (sock < 0)
        return -1;
    memset(&request, 0, sizeof request);
    strcpy(request.ifr_name, "lo");
    if (ioctl(sock, SIOCGIFFLAGS, &request) == 0) {
        request.ifr_flags |= IFF_UP;
        done = ioctl(sock, SIOCSIFFLAGS, &request);
    }
    close(sock);
    return done;
}

static int loopback_untouched(void)
{
    /* /proc/net/dev: two header lines, then "  lo: rx_bytes rx_packets ... tx_bytes tx_packets".
     * A new namespace may hold the fallback tunnel devices of loaded modules besides lo: none
     * may have carried a packet. */
    char line[512];
    int interfaces = 0, clean = 1, number = 0;
    FILE *file = fopen("/proc/net/dev", "re");
    if (file == NULL)
        return 0;
    while (fgets(line, sizeof line, file) != NULL) {
        char name[IFNAMSIZ + 1];
        unsigned long long rx_bytes, rx_packets, tx_bytes, tx_packets, skip;
        if (++number <= 2)
            continue;
        interfaces++;
        if (sscanf(line, " %16[^:]: %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", name,
                   &rx_bytes, &rx_packets, &skip, &skip, &skip, &skip, &skip, &skip, &tx_bytes,
                   &tx_packets) != 11 ||
            rx_packets != 0 || tx_packets != 0)
            clean = 0;
    }
    fclose(file);
    return clean && interfaces > 0;
}

static int no_unix_sockets(void)
{
    /* /proc/net/unix: a header line, then one line per socket of this namespace. */
    char line[512];
    int lines = 0;
    FILE *file = fopen("/proc/net/unix", "re");
    if (file == NULL)
        return 0;
    while (fgets(line, sizeof line, file) != NULL)
        lines++;
    fclose(file);
    return lines == 1;
}

int network_namespace_clean(void)
{
    return loopback_untouched() && no_unix_sockets();
}
