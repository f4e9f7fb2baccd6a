/*
 * connloop: a client that keeps connecting to a port while its server is
 * being killed and restarted, to count what a user would see: each round
 * connects, sends "GET /health HTTP/1.0" and reads the answer to EOF.
 *
 *   connloop PORT MAX_SECONDS
 *
 * Runs until SIGTERM/SIGINT or MAX_SECONDS, then prints {"ok","refused",
 * "reset","timeouts","other","max_wait_ms"}: refused is ECONNREFUSED at
 * connect (nobody listening), reset a connection dropped before an answer,
 * timeouts an answer slower than 5 s, max_wait_ms the slowest round that got
 * an answer (a connection parked in the listen queue during a restart).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: connloop PORT MAX_SECONDS\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double end = now_s() + atof(argv[2]), max_wait = 0;
    long ok = 0, refused = 0, reset = 0, timeouts = 0, other = 0;
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    static const char req[] = "GET /health HTTP/1.0\r\n\r\n";
    while (!stop && now_s() < end) {
        double t0 = now_s();
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            if (errno == ECONNREFUSED)
                refused++;
            else if (errno != EINTR)
                other++;
            close(fd);
            usleep(1000);
            continue;
        }
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) < 0) {
            reset++;
            close(fd);
            continue;
        }
        char buf[4096];
        size_t got = 0;
        int bad = 0;
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR && !stop)
                continue;
            if (n < 0 && errno == EINTR) {
                bad = 3; /* interrupted by the end of the run: not counted */
                break;
            }
            if (n < 0) {
                bad = errno == EAGAIN ? 2 : 1;
                break;
            }
            if (n == 0)
                break;
            got += (size_t)n;
        }
        close(fd);
        if (bad == 3)
            break;
        if (bad == 2)
            timeouts++;
        else if (bad || got < 12)
            reset++;
        else {
            ok++;
            if (now_s() - t0 > max_wait)
                max_wait = now_s() - t0;
        }
    }
    printf("{\"ok\":%ld,\"refused\":%ld,\"reset\":%ld,\"timeouts\":%ld,\"other\":%ld,"
           "\"max_wait_ms\":%.1f}\n",
           ok, refused, reset, timeouts, other, max_wait * 1e3);
    return 0;
}
