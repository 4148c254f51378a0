/*
 * d365/metadata — table definitions through the Dataverse metadata Web API:
 * read a table's columns and alternate keys, create custom columns and
 * alternate keys, wait until a key's index is built. Used by
 * `ml-connector dataverse setup|check` (server/cli_dataverse.c).
 *
 * Requests (paths relative to /api/data/v9.2/, sent with d365_send_ex):
 *   GET  EntityDefinitions?$select=LogicalName,EntitySetName&$filter=EntitySetName eq '<set>'
 *   GET  EntityDefinitions(LogicalName='<t>')?$select=LogicalName,EntitySetName
 *          &$expand=Attributes($select=LogicalName,AttributeType,IsCustomAttribute),
 *                   Keys($select=LogicalName,SchemaName,KeyAttributes,EntityKeyIndexStatus,AsyncJob)
 *   GET  EntityDefinitions(LogicalName='<t>')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata
 *          ?$select=LogicalName,MaxLength          (MaxLength is not on the base type)
 *   POST EntityDefinitions(LogicalName='<t>')/Attributes   <...AttributeMetadata>   -> 204
 *   POST EntityDefinitions(LogicalName='<t>')/Keys         <EntityKeyMetadata>      -> 204
 *   GET  asyncoperations(<AsyncJob>)?$select=message,friendlymessage  (why a key failed)
 * Payloads follow Microsoft's "Create and update column definitions using the
 * Web API" (StringAttributeMetadata with MaxLength and FormatName Text,
 * BooleanAttributeMetadata with an OptionSet of TrueOption/FalseOption,
 * DecimalAttributeMetadata with Precision/MinValue/MaxValue, ...) and "Work
 * with alternate keys" (EntityKeyMetadata: SchemaName, DisplayName,
 * KeyAttributes; EntityKeyIndexStatus Pending -> InProgress -> Active |
 * Failed; the index is built by an asynchronous job, EntityKeyMetadata.AsyncJob).
 * With a solution name, writes carry MSCRM.SolutionUniqueName so the new
 * components land in that solution (and can be exported to other environments).
 *
 * Errors: functions return -1 and write one line into err: what was asked,
 * the HTTP status, Dataverse's error code and message verbatim.
 * Threads: like the client it uses (one thread at a time per client).
 */
#ifndef MLC_D365_METADATA_H
#define MLC_D365_METADATA_H

#include <stddef.h>

#include "d365/webapi.h"

enum d365_md_type {
    D365_MD_STRING = 0,  /* single line of text (MaxLength <= 4000) */
    D365_MD_MEMO,        /* multiple lines of text */
    D365_MD_BOOLEAN,     /* Yes/No */
    D365_MD_DECIMAL,
    D365_MD_INTEGER,
    D365_MD_DATE,        /* date only */
};

struct d365_md_attr {
    char *logical;       /* "mlc_sapvendorid" */
    char *type;          /* AttributeType as Dataverse names it: "String", "Boolean", "Lookup", ... */
    int max_length;      /* String columns: MaxLength; 0 when not known */
    int custom;          /* IsCustomAttribute */
};

struct d365_md_key {
    char *logical, *schema;
    char **attrs;        /* KeyAttributes */
    size_t nattrs;
    char *status;        /* EntityKeyIndexStatus: "Pending", "InProgress", "Active", "Failed" */
    char *async_job;     /* AsyncJob id, or NULL */
};

struct d365_md_entity {
    char *logical, *set;
    struct d365_md_attr *attrs;
    size_t nattrs;
    struct d365_md_key *keys;
    size_t nkeys;
};

/* A column to create. */
struct d365_md_column {
    const char *schema_name;   /* "mlc_SapVendorId"; the logical name is its lower case */
    const char *display_name;  /* "SAP Vendor ID" */
    const char *description;   /* or NULL */
    enum d365_md_type type;
    int max_length;            /* STRING (1..4000) and MEMO */
    int language;              /* LCID of the labels; 0 -> 1033 */
};

/* Logical name of the table behind an entity set ("accounts" -> "account").
 * 0 found, 1 no such entity set, -1 error. */
int d365_metadata_logical_name(struct d365_client *c, const char *set, char *out, size_t outlen, char *err,
                               size_t errlen);

/* A table's columns (with MaxLength of its text columns) and keys. 0 ok, 1 no
 * such table, -1 error. Free with d365_metadata_entity_free. */
int d365_metadata_read(struct d365_client *c, const char *logical, struct d365_md_entity *out, char *err,
                       size_t errlen);
void d365_metadata_entity_free(struct d365_md_entity *e);

const struct d365_md_attr *d365_metadata_attr(const struct d365_md_entity *e, const char *logical);
/* The key whose KeyAttributes are exactly attrs[0..n-1] (any order), or NULL. */
const struct d365_md_key *d365_metadata_key_on(const struct d365_md_entity *e, const char *const *attrs, size_t n);

/* Request bodies (pure; exported for tests). Caller frees; NULL on OOM or
 * an invalid column (no schema name, STRING length outside 1..4000). */
char *d365_metadata_column_json(const struct d365_md_column *col);
char *d365_metadata_key_json(const char *schema_name, const char *display_name, const char *const *attrs, size_t n,
                             int language);

/* Create a column / an alternate key on table `logical`. solution: unique
 * name of an unmanaged solution, or NULL (default solution). 0 or -1. */
int d365_metadata_create_column(struct d365_client *c, const char *logical, const struct d365_md_column *col,
                                const char *solution, char *err, size_t errlen);
int d365_metadata_create_key(struct d365_client *c, const char *logical, const char *schema_name,
                             const char *display_name, const char *const *attrs, size_t n, int language,
                             const char *solution, char *err, size_t errlen);

/* Poll the key on attrs of table `logical` until its index is Active.
 * Polls every 0.25 s, growing to 5 s. *waited gets the seconds spent.
 * 0 Active; -1 with err: Failed (with the reason the index job gave), no
 * such key, timeout (naming the last status), or a request error. */
int d365_metadata_wait_key(struct d365_client *c, const char *logical, const char *const *attrs, size_t n,
                           double timeout_s, double *waited, char *err, size_t errlen);

/* Why a key's index failed: the message of its AsyncJob, or a generic hint.
 * Always writes something into err. */
void d365_metadata_key_failure(struct d365_client *c, const struct d365_md_key *k, char *err, size_t errlen);

#endif
