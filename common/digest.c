/*
 * digest: libcrypto's SHA-1, SHA-256 and base64, reached through dlopen on
 * the first call instead of a link-time dependency. The program that serves
 * TLS (the supervisor) links libcrypto anyway, and dlopen then just finds it
 * loaded; a worker that never sees a WebSocket never maps it. libcrypto
 * missing is a broken install: fatal, as running out of memory is.
 */
#include "common/digest.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>

#define DIGEST_STR2(x) #x
#define DIGEST_STR(x) DIGEST_STR2(x)
/* The soname of the libcrypto we were compiled against (libcrypto.so.3). */
#define DIGEST_LIBCRYPTO "libcrypto.so." DIGEST_STR(OPENSSL_SHLIB_VERSION)

static struct {
    __typeof__(&SHA1) sha1;
    __typeof__(&EVP_Digest) evp_digest;
    __typeof__(&EVP_sha256) evp_sha256;
    __typeof__(&EVP_EncodeBlock) encode_block;
} digest_fn;
static pthread_once_t digest_once = PTHREAD_ONCE_INIT;

/* Abort with MSG and dlerror(): without libcrypto nothing can be hashed. */
static void digest_fatal(const char *msg)
{
    const char *why = dlerror();
    ssize_t unused = write(STDERR_FILENO, msg, strlen(msg));
    if (why) {
        unused = write(STDERR_FILENO, ": ", 2);
        unused = write(STDERR_FILENO, why, strlen(why));
    }
    unused = write(STDERR_FILENO, "\n", 1);
    (void)unused;
    abort();
}

/* Find SYMBOL in HANDLE or die. */
static void *digest_symbol(void *handle, const char *symbol)
{
    void *p = dlsym(handle, symbol);
    if (p == NULL)
        digest_fatal("hive: libcrypto lacks a function it needs");
    return p;
}

/* Load libcrypto and its four functions, once per process. */
static void digest_load(void)
{
    void *h = dlopen(DIGEST_LIBCRYPTO, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL)
        digest_fatal("hive: cannot load " DIGEST_LIBCRYPTO);
    /* POSIX's way to turn a dlsym result into a function pointer. */
    *(void **)&digest_fn.sha1 = digest_symbol(h, "SHA1");
    *(void **)&digest_fn.evp_digest = digest_symbol(h, "EVP_Digest");
    *(void **)&digest_fn.evp_sha256 = digest_symbol(h, "EVP_sha256");
    *(void **)&digest_fn.encode_block = digest_symbol(h, "EVP_EncodeBlock");
}

void digest_sha1(const void *data, size_t len, unsigned char out[DIGEST_SHA1_LEN])
{
    pthread_once(&digest_once, digest_load);
    digest_fn.sha1(data, len, out);
}

void digest_sha256(const void *data, size_t len, unsigned char out[DIGEST_SHA256_LEN])
{
    unsigned int n = 0;
    pthread_once(&digest_once, digest_load);
    if (digest_fn.evp_digest(data, len, out, &n, digest_fn.evp_sha256(), NULL) != 1 ||
        n != DIGEST_SHA256_LEN)
        digest_fatal("hive: SHA-256 failed");
}

int digest_base64(char *out, const unsigned char *in, size_t len)
{
    pthread_once(&digest_once, digest_load);
    return digest_fn.encode_block((unsigned char *)out, in, (int)len);
}
