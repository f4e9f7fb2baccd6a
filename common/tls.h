/*
 * tls: the client side of TLS for talking to remote bots (OpenSSL): a
 * context that verifies the peer's chain against a CA file (or the system's
 * store) and a connection that checks the certificate names the host it was
 * asked for (a DNS name or an IP address) and sends it as SNI. Returns
 * errors in a buffer; never logs.
 */
#ifndef HIVE_TLS_H
#define HIVE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* A client context trusting CA_FILE (PEM), or the system's store when NULL;
 * NULL with the reason in ERR. Free with SSL_CTX_free. */
SSL_CTX *tls_client_ctx(const char *ca_file, char *err, size_t errlen);
/* A connection of CTX to HOST (name or address) with hostname verification
 * on; NULL when OpenSSL fails. */
SSL *tls_client_ssl(SSL_CTX *ctx, const char *host);
/* The reason of the latest OpenSSL failure of this thread, in BUF. */
const char *tls_error(char *buf, size_t len);

#endif
