/*
 * check_ssehub: the event stream's hub arms no timer while nobody listens.
 * An idle worker with no subscriber must not wake up for a keepalive comment
 * no one reads: at 1,000 idle bots each wake-up (~150 µs on a small VM) is
 * what the hive's idle CPU is made of. A loop with nothing armed returns at
 * once with 1; a keepalive timer armed would make it wait and return 0.
 */
#include "common/ssehub.h"

#include <check.h>
#include <event2/event.h>
#include <stdlib.h>

#include "tests/check_support.h"

START_TEST(test_no_timer_without_subscribers)
{
    struct event_base *base = event_base_new();
    struct ssehub *hub = ssehub_new(base, 1024, 20, true);
    ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE), 1);
    ck_assert_uint_eq(ssehub_subscribers(hub), 0);
    ssehub_free(hub);
    event_base_free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ssehub");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_no_timer_without_subscribers);
    suite_add_tcase(s, tc);
    return check_run(s);
}
