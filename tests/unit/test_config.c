/* Unit tests for config/: the key table, ${ENV}, validation messages that
 * name the JSON path, derived defaults, and masking in config_dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static char dir[] = "/tmp/mlc-cfg-XXXXXX";

static const char *write_cfg(const char *body)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/c.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
    return path;
}

#define BASE_SAP "\"sap\": {\"username\": \"SAPIDOC\", \"password\": \"pw\"}"
#define BASE_DV "\"dataverse\": {\"url\": \"https://org.crm4.dynamics.com/\", \"tenant_id\": \"t1\", " \
                "\"client_id\": \"c1\", \"client_secret\": \"topsecret\"}"

static struct config *load(const char *body, char *err, size_t errlen)
{
    return config_load(write_cfg(body), err, errlen);
}

static void expect_error(const char *body, const char *needle)
{
    char err[512] = "";
    struct config *c = load(body, err, sizeof err);
    if (c) config_free(c);
    assert_null(c);
    if (!strstr(err, needle)) fail_msg("error '%s' does not contain '%s'", err, needle);
}

static void test_minimal_defaults(void **s)
{
    (void)s;
    char err[512];
    struct config *c = load("{" BASE_SAP "," BASE_DV "}", err, sizeof err);
    assert_non_null(c);
    assert_string_equal(c->listen_address, "0.0.0.0");
    assert_int_equal(c->listen_port, 8080);
    assert_string_equal(c->sap_path, "/sap/idoc");
    assert_int_equal(c->sap_max_body_mb, 64);
    assert_int_equal(c->queue_max_size_mb, 1024);
    assert_string_equal(c->dv_url, "https://org.crm4.dynamics.com"); /* trailing / dropped */
    assert_string_equal(c->dv_token_url, "https://login.microsoftonline.com/t1/oauth2/v2.0/token");
    assert_string_equal(c->dv_scope, "https://org.crm4.dynamics.com/.default");
    assert_string_equal(c->delivery_schedule, "continuous");
    assert_null(c->admin_token);
    char want[300];
    snprintf(want, sizeof want, "%s/config/mapping.json", dir);
    assert_string_equal(c->mapping_path, want);
    config_free(c);
}

static void test_env_interpolation(void **s)
{
    (void)s;
    setenv("MLC_T_PW", "from-env", 1);
    setenv("MLC_T_PORT", "9091", 1);
    char err[512];
    struct config *c = load("{\"listen\": {\"port\": \"${MLC_T_PORT}\"}, \"sap\": {\"username\": \"U\", "
                            "\"password\": \"x-${MLC_T_PW}-y\"}," BASE_DV "}", err, sizeof err);
    assert_non_null(c);
    assert_string_equal(c->sap_password, "x-from-env-y");
    assert_int_equal(c->listen_port, 9091);
    config_free(c);
    unsetenv("MLC_T_MISSING");
    expect_error("{\"sap\": {\"username\": \"U\", \"password\": \"${MLC_T_MISSING}\"}," BASE_DV "}",
                 "sap.password: environment variable MLC_T_MISSING is not set");
}

static void test_errors_name_the_path(void **s)
{
    (void)s;
    expect_error("{" BASE_SAP "," BASE_DV ", \"listen\": {\"prot\": 1}}", "listen.prot: unknown key");
    expect_error("{" BASE_SAP "," BASE_DV ", \"bogus\": 1}", "bogus: unknown key");
    expect_error("{" BASE_SAP "," BASE_DV ", \"listen\": {\"port\": \"abc\"}}", "listen.port: 'abc' is not a whole number");
    expect_error("{" BASE_SAP "," BASE_DV ", \"listen\": {\"port\": 70000}}", "listen.port: 70000 is outside 0..65535");
    expect_error("{" BASE_SAP "," BASE_DV ", \"listen\": {\"port\": 1.5}}", "listen.port: expected a whole number");
    expect_error("{" BASE_SAP "," BASE_DV ", \"queue\": {\"max_size_mb\": 0}}", "queue.max_size_mb");
    expect_error("{" BASE_SAP "," BASE_DV ", \"mapping\": 5}", "mapping: expected a string");
    expect_error("{" BASE_DV "}", "sap.username: required key is missing");
    expect_error("{" BASE_SAP "}", "dataverse.url: required key is missing");
    expect_error("{" BASE_SAP ", \"dataverse\": {\"url\": \"http://org.example.com\", \"tenant_id\": \"t\", "
                 "\"client_id\": \"c\", \"client_secret\": \"s\"}}", "dataverse.url");
    expect_error("{" BASE_SAP ", \"dataverse\": {\"url\": \"https://o\", \"tenant_id\": \"t\", "
                 "\"client_id\": \"c\"}}", "dataverse.client_secret");
    expect_error("{" BASE_SAP "," BASE_DV ", \"delivery\": {\"schedule\": \"every day\"}}", "delivery.schedule");
    expect_error("{" BASE_SAP "," BASE_DV ", \"log\": {\"level\": \"loud\"}}", "log.level");
    expect_error("{" BASE_DV ", \"sap\": {\"username\": \"U\", \"password\": \"p\", \"path\": \"idoc\"}}",
                 "sap.path: 'idoc' must start with /");
    expect_error("{" BASE_SAP "," BASE_DV ", \"sap\": 3}", "sap: duplicate key");
    expect_error("{ not json", "invalid JSON near line 1");
}

static void test_loopback_http_allowed(void **s)
{
    (void)s;
    const char *hosts[] = {"http://127.0.0.1:8443", "http://localhost:1/", "http://[::1]:80"};
    for (size_t i = 0; i < 3; i++) {
        char body[600], err[512];
        snprintf(body, sizeof body,
                 "{" BASE_SAP ", \"dataverse\": {\"url\": \"%s\", \"tenant_id\": \"t\", \"client_id\": \"c\", "
                 "\"client_secret\": \"s\", \"token_url\": \"%s/token\"}}", hosts[i], hosts[i]);
        struct config *c = load(body, err, sizeof err);
        if (!c) fail_msg("%s refused: %s", hosts[i], err);
        config_free(c);
    }
}

static void test_dump_masks_secrets(void **s)
{
    (void)s;
    char err[512];
    struct config *c = load("{" BASE_SAP "," BASE_DV ", \"admin\": {\"token\": \"admintokenvalue\"}}", err, sizeof err);
    assert_non_null(c);
    char *d = config_dump(c);
    assert_non_null(d);
    assert_null(strstr(d, "topsecret"));
    assert_null(strstr(d, "admintokenvalue"));
    assert_null(strstr(d, "\"pw\""));
    assert_non_null(strstr(d, "\"********\""));
    assert_non_null(strstr(d, "\"max_body_mb\":\t64"));
    free(d);
    config_free(c);
}

static void test_path_from_args(void **s)
{
    (void)s;
    char *argv1[] = {"serve", "-c", "/x.json", NULL};
    assert_string_equal(config_path_from_args(3, argv1), "/x.json");
    char *argv2[] = {"serve", NULL};
    setenv("MLC_CONFIG", "/env.json", 1);
    assert_string_equal(config_path_from_args(1, argv2), "/env.json");
    unsetenv("MLC_CONFIG");
    assert_null(config_path_from_args(1, argv2));
}

int main(void)
{
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),  cmocka_unit_test(test_env_interpolation),
        cmocka_unit_test(test_errors_name_the_path), cmocka_unit_test(test_loopback_http_allowed),
        cmocka_unit_test(test_dump_masks_secrets), cmocka_unit_test(test_path_from_args),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char path[300];
    snprintf(path, sizeof path, "%s/c.json", dir);
    unlink(path);
    rmdir(dir);
    return rc;
}
