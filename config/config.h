/*
 * config — the gateway's JSON configuration (CONTRACT.md "Configuration file").
 *
 * Every key is declared once, in the table in config.c: JSON path, type,
 * default, limits, whether it is a secret. Loading walks the table, so an
 * unknown key, a wrong type, a value out of range or a missing ${ENV}
 * variable is an error naming the JSON path ("config: sap.max_body_mb: 0 is
 * below the minimum 1"). The result is an immutable struct.
 *
 * Threads: load in main() before threads start; afterwards read-only.
 */
#ifndef MLC_CONFIG_H
#define MLC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct config {
    /* listen */
    char *listen_address;
    int64_t listen_port;
    int64_t listen_threads;          /* HTTP worker threads (MHD pool) */
    int64_t listen_connection_limit;
    int64_t listen_timeout_s;        /* idle connection timeout */
    char *listen_tls_cert;           /* PEM; with tls_key: HTTPS (NULL: plain HTTP) */
    char *listen_tls_key;            /* PEM path (printed; its content never is) */
    char *listen_client_ca;          /* PEM bundle; client certificates for sap.path */
    char *listen_client_subject;     /* optional pin, see common/tls.h */
    char *listen_tls_priorities;     /* GnuTLS priority string */
    /* sap */
    char *sap_path;
    char *sap_username;
    char *sap_password;              /* secret */
    int64_t sap_max_body_mb;
    int64_t sap_max_idocs;           /* per request */
    /* queue */
    char *queue_path;
    int64_t queue_max_size_mb;
    /* dataverse */
    char *dv_url;
    char *dv_tenant_id;
    char *dv_client_id;
    char *dv_client_secret;          /* secret */
    char *dv_token_url;              /* resolved default: login.microsoftonline.com */
    char *dv_scope;                  /* resolved default: {url}/.default */
    char *dv_client_certificate;
    char *dv_client_key;
    char *dv_assertion_alg;          /* "PS256" (default) or "RS256" */
    int64_t dv_timeout_s;            /* one HTTP request to Dataverse */
    /* mapping (resolved against the config file's folder) */
    char *mapping_path;
    /* delivery */
    char *delivery_schedule;
    int64_t delivery_workers;        /* delivery threads */
    int64_t delivery_batch_size;     /* operations per $batch */
    int64_t delivery_max_concurrency;/* requests in flight to Dataverse (<= 52) */
    int64_t delivery_retry_base_s;   /* first back-off; doubles, full jitter */
    int64_t delivery_retry_cap_s;    /* longest back-off */
    int64_t delivery_bind_retry_hours; /* a missing bind target is retried this long */
    int64_t delivery_max_run_minutes;/* a scheduled run stops after this */
    int64_t queue_retention_days;    /* delivered/ignored records kept */
    int64_t audit_retention_days;    /* audit entries and runs kept */
    /* admin */
    char *admin_token;               /* secret; NULL: /admin/ answers 404 */
    /* log */
    char *log_level;                 /* error, warn, info, debug */
    char *log_format;                /* text, json */

    char *source_path;               /* the file it was loaded from */
};

/* Load, interpolate ${ENV}, validate. On error returns NULL and writes one
 * line naming the JSON path into err. Free with config_free. */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *c);

/* The effective configuration as JSON text (every key, defaults filled in),
 * secrets replaced by "********". Caller frees. */
char *config_dump(const struct config *c);

/* The config path from -c or $MLC_CONFIG (argv scanning helper for the CLI):
 * returns NULL when neither is given. */
const char *config_path_from_args(int argc, char **argv);

#endif
