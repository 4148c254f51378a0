/* Unit tests for common/log: one line per event, text and JSON forms, the
 * well-known key=value pairs lifted into JSON fields, levels. And the small
 * common/util helpers (SHA-256 of secrets, monotonic clock). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* Run fn with stderr redirected to a temp file; return what it wrote. */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/mlc-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    static char buf[16384];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    return buf;
}

static void emit_json(void)
{
    log_set_format("json");
    log_set_level("info");
    log_info("ingest: status=200 idocs=2 docnum=0000000091000001 mestyp=CREMAS seq=17 \"quoted\"\nnext");
    log_debug("not shown");
}

static void test_json(void **s)
{
    (void)s;
    char *out = capture(emit_json);
    assert_non_null(strstr(out, "\"level\":\"info\""));
    assert_non_null(strstr(out, "\"docnum\":\"0000000091000001\""));
    assert_non_null(strstr(out, "\"seq\":17"));
    assert_non_null(strstr(out, "\"status\":200"));
    assert_non_null(strstr(out, "\"mestyp\":\"CREMAS\""));
    assert_non_null(strstr(out, "\\\"quoted\\\" next")); /* escaped, newline folded */
    assert_null(strstr(out, "not shown"));
    /* exactly one line */
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
}

static void emit_text(void)
{
    log_set_format("text");
    log_set_level("warn");
    log_info("hidden");
    log_warn("shown seq=3");
}

static void test_text_and_levels(void **s)
{
    (void)s;
    char *out = capture(emit_text);
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "warn  shown seq=3\n"));
    assert_int_equal(log_set_level("loud"), -1);
    assert_int_equal(log_set_format("xml"), -1);
}

/* util_sha256 against FIPS 180-2 test vectors, and the same digest on every
 * call (the MD is fetched once and shared). */
/* util_copy / util_concat: snprintf("%s")'s results, cut at the same place. */
static void test_copy_concat(void **state)
{
    (void)state;
    char b[8];
    assert_int_equal(util_copy(b, sizeof b, "abc"), 3);
    assert_string_equal(b, "abc");
    assert_int_equal(util_copy(b, sizeof b, "abcdefghij"), 10);
    assert_string_equal(b, "abcdefg");
    assert_int_equal(util_copy(b, sizeof b, NULL), 0);
    assert_string_equal(b, "");
    assert_int_equal(util_copy(b, 1, "xyz"), 3);
    assert_string_equal(b, "");
    b[0] = 'q';
    assert_int_equal(util_copy(b, 0, "xyz"), 3);
    assert_int_equal(b[0], 'q'); /* cap 0: nothing written */

    assert_int_equal(UTIL_CONCAT(b, sizeof b, "ven", ":", "12"), 6);
    assert_string_equal(b, "ven:12");
    assert_int_equal(UTIL_CONCAT(b, sizeof b, "vendor", ":", "0000100003"), 17);
    assert_string_equal(b, "vendor:");
    assert_int_equal(UTIL_CONCAT(b, sizeof b, "", ""), 0);
    assert_string_equal(b, "");
    assert_int_equal(UTIL_CONCAT(b, 1, "a", "b"), 2);
    assert_string_equal(b, "");

    char n[UTIL_U64_LEN];
    assert_int_equal(util_u64(n, 0), 1);
    assert_string_equal(n, "0");
    assert_int_equal(util_u64(n, 42), 2);
    assert_string_equal(n, "42");
    assert_int_equal(util_u64(n, 18446744073709551615ULL), 20);
    assert_string_equal(n, "18446744073709551615");
}

static void test_sha256(void **state)
{
    (void)state;
    unsigned char d[32];
    static const unsigned char abc[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    static const unsigned char empty[32] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
        0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(util_sha256("abc", 3, d), 0);
        assert_memory_equal(d, abc, 32);
        assert_int_equal(util_sha256("", 0, d), 0);
        assert_memory_equal(d, empty, 32);
    }
}

static void test_mono(void **state)
{
    (void)state;
    double a = util_mono_s();
    usleep(20000);
    double b = util_mono_s();
    assert_true(b - a >= 0.015 && b - a < 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_json), cmocka_unit_test(test_text_and_levels),
                                       cmocka_unit_test(test_sha256), cmocka_unit_test(test_mono),
                                       cmocka_unit_test(test_copy_concat)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
