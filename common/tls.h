/*
 * tls: TLS contexts (OpenSSL). The server side presents the front door's
 * certificate (the connections are common/tlsserve.c's). The client side,
 * for talking to remote bots and for the CLI, is a
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
/* A server context presenting CERT_FILE (a PEM chain, leaf first) with
 * KEY_FILE, TLS 1.2 or later; NULL with the reason in ERR. Free with
 * SSL_CTX_free. */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen);
/* The reason of the latest OpenSSL failure of this thread, in BUF. */
const char *tls_error(char *buf, size_t len);

#endif
