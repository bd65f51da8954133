/* connload: the load tool of the connection-rate benchmark (`make bench`).
 *
 * usage: connload DST PORT SECONDS CONCURRENCY [SRC,SRC,...]
 * Keeps CONCURRENCY short TCP connections in flight with one epoll: connect, read the server's byte
 * and its FIN, close, start the next. New connections are started for SECONDS; those still open
 * then get at most 2 more seconds to finish. Prints
 * "completed <n> late <n> failed <n> unfinished <n> seconds <SECONDS>": completed counts the
 * connections that received the byte and the FIN within the SECONDS window, late those after it.
 * With a list of source addresses, connection i is bound to source i modulo the list (many inside
 * hosts: statewall run --workers steers by the inside host).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in sa;
static int ep;
static unsigned long long started, completed, late, failed;
static struct sockaddr_in srcs[256];
static int nsrcs;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_one(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    /* The port is chosen at connect() (IP_BIND_ADDRESS_NO_PORT), where tcp_tw_reuse applies. */
    int one = 1;
    if (nsrcs) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (nsrcs && bind(fd, (struct sockaddr *)&srcs[started % nsrcs], sizeof srcs[0]) < 0) {
        close(fd);
        failed++;
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        failed++;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    started++;
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s DST PORT SECONDS CONCURRENCY\n", argv[0]);
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    if (argc > 5) {
        char *list = strdup(argv[5]);
        for (char *tok = strtok(list, ","); tok && nsrcs < 256; tok = strtok(NULL, ",")) {
            srcs[nsrcs].sin_family = AF_INET;
            if (inet_pton(AF_INET, tok, &srcs[nsrcs].sin_addr) != 1) {
                fprintf(stderr, "bad source address %s\n", tok);
                return 2;
            }
            nsrcs++;
        }
    }
    int conc = atoi(argv[4]);
    if (conc < 1) conc = 1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    double start = now(), stop = start + atof(argv[3]), give_up = stop + 2.0;
    int open = 0;
    for (int i = 0; i < conc; i++)
        if (open_one() >= 0) open++;
    struct epoll_event evs[256];
    char buf[64];
    while (open > 0) {
        double t = now();
        if (t >= give_up) break;
        int n = epoll_wait(ep, evs, 256, 50);
        int accepting = now() < stop;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            int done = 0, ok = 0;
            if (evs[i].events & (EPOLLERR)) {
                done = 1;
            } else {
                for (;;) {
                    ssize_t r = read(fd, buf, sizeof buf);
                    if (r > 0) continue;
                    if (r == 0) { done = 1; ok = 1; }
                    else if (errno != EAGAIN && errno != EINTR) done = 1;
                    break;
                }
            }
            if (!done) continue;
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            close(fd);
            open--;
            if (!ok) failed++;
            else if (now() <= stop) completed++;
            else late++;
            if (accepting && open_one() >= 0) open++;
        }
        /* keep the pipeline full even after failures to open */
        while (accepting && open < conc && open_one() >= 0) open++;
    }
    printf("completed %llu late %llu failed %llu unfinished %d seconds %.3f\n", completed, late, failed, open,
           stop - start);
    return 0;
}
