/*
 * digest: SHA-1, SHA-256 and base64 from OpenSSL's libcrypto, loaded on first
 * use. A worker needs them only for a WebSocket handshake or the page's CSP
 * hashes; mapping and relocating libcrypto at every start cost a worker
 * ~4 ms of CPU and ~125 page faults, more than all the rest of its start.
 */
#ifndef HIVE_DIGEST_H
#define HIVE_DIGEST_H

#include <stddef.h>

#define DIGEST_SHA1_LEN 20
#define DIGEST_SHA256_LEN 32

/* SHA-1 of LEN bytes at DATA into OUT. */
void digest_sha1(const void *data, size_t len, unsigned char out[DIGEST_SHA1_LEN]);
/* SHA-256 of LEN bytes at DATA into OUT. */
void digest_sha256(const void *data, size_t len, unsigned char out[DIGEST_SHA256_LEN]);
/* Base64 of LEN bytes at IN into OUT (4 * ceil(LEN / 3) characters and a NUL);
 * returns the number of characters written. */
int digest_base64(char *out, const unsigned char *in, size_t len);

#endif
