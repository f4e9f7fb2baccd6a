/*
 * check_strmap: the string map behind the proxy's and the HTTP client's pool
 * look-ups: put, get, replace, remove, and growth past many doublings with
 * every key still found (and the removed ones gone).
 */
#include "common/strmap.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/check_support.h"

START_TEST(test_put_get_replace_remove)
{
    struct strmap *m = strmap_new();
    int a, b;
    ck_assert_ptr_null(strmap_get(m, "BOT-001"));
    strmap_put(m, "BOT-001", &a);
    ck_assert_ptr_eq(strmap_get(m, "BOT-001"), &a);
    strmap_put(m, "BOT-001", &b);
    ck_assert_ptr_eq(strmap_get(m, "BOT-001"), &b);
    ck_assert_uint_eq(strmap_count(m), 1);
    strmap_put(m, "", &a); /* the empty key is a key */
    ck_assert_ptr_eq(strmap_get(m, ""), &a);
    ck_assert_ptr_eq(strmap_remove(m, "BOT-001"), &b);
    ck_assert_ptr_null(strmap_remove(m, "BOT-001"));
    ck_assert_ptr_null(strmap_get(m, "BOT-001"));
    ck_assert_uint_eq(strmap_count(m), 1);
    strmap_free(m);
    strmap_free(NULL);
}
END_TEST

START_TEST(test_grows_and_keeps_every_key)
{
    enum { N = 5000 };
    static int values[N];
    char key[32];
    struct strmap *m = strmap_new();
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "127.0.0.1:%d", 20000 + i);
        strmap_put(m, key, &values[i]);
    }
    ck_assert_uint_eq(strmap_count(m), N);
    for (int i = 0; i < N; i += 2) {
        snprintf(key, sizeof key, "127.0.0.1:%d", 20000 + i);
        ck_assert_ptr_eq(strmap_remove(m, key), &values[i]);
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "127.0.0.1:%d", 20000 + i);
        ck_assert_ptr_eq(strmap_get(m, key), i % 2 ? &values[i] : NULL);
    }
    ck_assert_uint_eq(strmap_count(m), N / 2);
    strmap_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("strmap");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_put_get_replace_remove);
    tcase_add_test(tc, test_grows_and_keeps_every_key);
    suite_add_tcase(s, tc);
    return check_run(s);
}
