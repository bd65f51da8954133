/* udpflood: send small UDP datagrams as fast as one core can, with sendmmsg, for `make bench`.
 *
 * usage: udpflood DST PORT SECONDS [PAYLOAD_BYTES [SRC,SRC,...]]
 * One connected UDP socket, batches of 64 datagrams per sendmmsg(2). With a list of source addresses,
 * one connected socket per source, each bound to its address, and the batches rotate over them: one
 * flow per inside host (statewall run --workers steers by the inside host, so a single flow stays on
 * one worker). Prints
 * "sent <datagrams> errors <failed calls> seconds <elapsed>" when done. The rate that counts is
 * measured at the sink, not here: a datagram the kernel drops after sendmmsg accepted it is "sent".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { BATCH = 64, MAXSRC = 256 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DST PORT SECONDS [PAYLOAD_BYTES [SRC,SRC,...]]\n", argv[0]);
        return 2;
    }
    int size = argc > 4 ? atoi(argv[4]) : 64;
    if (size < 0 || size > 1400) size = 64;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    int fds[MAXSRC], nfds = 0;
    char *list = argc > 5 ? argv[5] : NULL;
    for (char *tok = list ? strtok(list, ",") : NULL; tok && nfds < MAXSRC; tok = strtok(NULL, ",")) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        if (inet_pton(AF_INET, tok, &src.sin_addr) != 1) {
            fprintf(stderr, "bad source address %s\n", tok);
            return 2;
        }
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
            connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror(tok);
            return 1;
        }
        fds[nfds++] = fd;
    }
    if (nfds == 0) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("socket/connect");
            return 1;
        }
        fds[nfds++] = fd;
    }
    int sndbuf = 4 << 20;
    for (int i = 0; i < nfds; i++) setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    static char payload[1500];
    memset(payload, 'x', sizeof payload);
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = payload;
        iov[i].iov_len = (size_t)size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    double start = now(), end = start + atof(argv[3]);
    unsigned long long sent = 0, errors = 0;
    for (unsigned long loops = 0;; loops++) {
        if ((loops & 15) == 0 && now() >= end) break;
        int n = sendmmsg(fds[loops % (unsigned long)nfds], msgs, BATCH, 0);
        if (n < 0) {
            if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR) {
                perror("sendmmsg");
                return 1;
            }
            errors++;
            continue;
        }
        sent += (unsigned long long)n;
    }
    printf("sent %llu errors %llu seconds %.3f\n", sent, errors, now() - start);
    return 0;
}
