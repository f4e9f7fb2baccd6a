/*
 * tlsserve: a TLS acceptor in front of a plain HTTP server. It accepts on a
 * listening TCP socket, does the server side of each TLS handshake
 * (libevent's OpenSSL bufferevents) and hands every client, once its
 * handshake is done, to ADOPT as the plain end of a socketpair with the
 * client's address; it relays the bytes both ways with back-pressure.
 */
#ifndef HIVE_TLSSERVE_H
#define HIVE_TLSSERVE_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

struct tlsserve;

/* Take FD (the plain end of a client's relay) from a client at PEER that
 * reached LOCAL; 0, or -1 when refused (FD closed by the callee). */
typedef int (*tlsserve_adopt_cb)(int fd, const struct sockaddr *peer, const struct sockaddr *local,
                                 void *arg);

struct tlsserve_config {
    int max_connections;      /* clients at once, handshaking or relayed */
    int handshake_timeout_ms; /* a client silent this long in its handshake goes */
    tlsserve_adopt_cb adopt;
    void *arg;
};

/* Accept TLS on LISTEN_FD (bound and listening; ours now) with CTX (ours
 * now too); NULL when the socket cannot be watched (neither is freed). */
struct tlsserve *tlsserve_new(struct event_base *base, int listen_fd, SSL_CTX *ctx,
                              const struct tlsserve_config *config);
/* Close the listener, every client (both sides) and the context. */
void tlsserve_free(struct tlsserve *ts);

#endif
