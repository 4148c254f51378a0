/* Unit tests for common/log: one line per event, text and JSON forms, the
 * well-known key=value pairs lifted into JSON fields, levels. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_json), cmocka_unit_test(test_text_and_levels)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
