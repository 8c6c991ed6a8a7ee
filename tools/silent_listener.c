/*
 * silent_listener — a TCP server that accepts connections and never answers,
 * for tests of connect timeouts (a backend that hangs during login).
 *
 *   silent_listener HOST PORT
 *
 * Prints "listening" once bound, then "accepted N" for every connection; it
 * reads and discards what clients send and keeps their sockets open until
 * it is killed.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#define MAX_CONNS 256

int main(int argc, char **argv)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res;
    struct pollfd fds[MAX_CONNS + 1];
    int nfds = 1, on = 1, accepted = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: silent_listener HOST PORT\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = getaddrinfo(argv[1], argv[2], &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "silent_listener: %s\n", gai_strerror(rc));
        return 1;
    }
    int ls = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        bind(ls, res->ai_addr, res->ai_addrlen) < 0 || listen(ls, 64) < 0) {
        fprintf(stderr, "silent_listener: %s:%s: %s\n", argv[1], argv[2], strerror(errno));
        return 1;
    }
    freeaddrinfo(res);
    printf("listening\n");
    fds[0].fd = ls;
    fds[0].events = POLLIN;
    for (;;) {
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if ((fds[0].revents & POLLIN) && nfds <= MAX_CONNS) {
            int c = accept(ls, NULL, NULL);
            if (c >= 0) {
                fds[nfds].fd = c;
                fds[nfds].events = POLLIN;
                fds[nfds].revents = 0;
                nfds++;
                printf("accepted %d\n", ++accepted);
            }
        }
        for (int i = 1; i < nfds; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            ssize_t n = read(fds[i].fd, buf, sizeof(buf));
            if (n <= 0) {
                /* the peer left: forget it */
                close(fds[i].fd);
                fds[i] = fds[--nfds];
                i--;
            }
        }
    }
}
