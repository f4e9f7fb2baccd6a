/*
 * tls: OpenSSL client contexts and connections with verification on (see
 * tls.h). The peer's chain must reach a trusted CA and its certificate must
 * name the host: SSL_set1_host for names, X509_VERIFY_PARAM_set1_ip_asc for
 * addresses (a name check would never match an address).
 */
#include "common/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>

/* A client context trusting CA_FILE or the system's store. */
SSL_CTX *tls_client_ctx(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char why[200];
    if (!ctx) {
        snprintf(err, errlen, "TLS: %s", tls_error(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, errlen, "TLS: cannot load %s: %s", ca_file ? ca_file : "the system's CAs",
                 tls_error(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* A server context with CERT_FILE and KEY_FILE, checked to match. */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char why[200];
    if (!ctx) {
        snprintf(err, errlen, "TLS: %s", tls_error(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No renegotiation, no session tickets to keep keys for: each client
     * handshakes in full, which is fine for a front door of a few clients. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    const char *bad = NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        bad = cert_file;
    else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
             SSL_CTX_check_private_key(ctx) != 1)
        bad = key_file;
    if (bad) {
        snprintf(err, errlen, "TLS: cannot use %s: %s", bad, tls_error(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* True when HOST is a numeric IPv4 or IPv6 address. */
static int tls_is_address(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A connection to HOST with its name (or address) verified. */
SSL *tls_client_ssl(SSL_CTX *ctx, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    int ok;
    if (tls_is_address(host)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    } else {
        ok = SSL_set1_host(ssl, host) == 1 && SSL_set_tlsext_host_name(ssl, host) == 1;
    }
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* The latest OpenSSL error of this thread, or "unknown". */
const char *tls_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(buf, len, "unknown TLS error");
        return buf;
    }
    ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}
