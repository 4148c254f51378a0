/*
 * test_dataverse_schema — the pure parts of Dataverse provisioning (issue
 * 5): what the mapping writes (mapping_schema) for the shipped mapping, per
 * orders_target, and for a hand-written mapping that exercises every kind
 * of value; and the metadata request bodies (d365_metadata_column_json /
 * _key_json) that `ml-connector dataverse setup` sends.
 * Fixtures are read relative to the repo root: $MLC_ROOT, else ".".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/mapping.h"
#include "d365/metadata.h"

static char g_shipped[4096];

static const char *shipped(void)
{
    const char *r = getenv("MLC_ROOT");
    char rel[1024];
    snprintf(rel, sizeof rel, "%s/config/mapping.json", r && *r ? r : ".");
    if (!realpath(rel, g_shipped)) snprintf(g_shipped, sizeof g_shipped, "%s", rel);
    return g_shipped;
}

/* Write text to a temp file; returns its path (static buffer per slot). */
static const char *tmpfile_with(int slot, const char *text)
{
    static char paths[4][256];
    snprintf(paths[slot], sizeof paths[slot], "/tmp/test_dataverse_schema_%d_%d.json", (int)getpid(), slot);
    FILE *f = fopen(paths[slot], "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return paths[slot];
}

/* The schema as lines "entity column kind maxlen target target_key match value". */
struct lines {
    char buf[16384];
    size_t n;
    int count;
};

static int collect(const struct mapping_schema_item *it, void *ud)
{
    struct lines *l = ud;
    l->n += (size_t)snprintf(l->buf + l->n, sizeof l->buf - l->n, "%s %s %s %d %s %s %s %s\n", it->entity,
                             it->column, mapping_schema_kind_name(it->kind), it->max_length,
                             it->target ? it->target : "-", it->target_key ? it->target_key : "-",
                             it->match ? it->match : "-", it->match_value ? it->match_value : "-");
    l->count++;
    return 0;
}

static void schema_of(const char *path, struct lines *l)
{
    char err[512];
    struct mapping *m = mapping_load(path, err, sizeof err);
    if (!m) fail_msg("%s", err);
    memset(l, 0, sizeof *l);
    assert_int_equal(mapping_schema(m, collect, l), 0);
    mapping_free(m);
}

/* The exact list for config/mapping.json (orders_target opportunity):
 * 8 custom columns (mlc_*), 5 one-column keys, the standard columns with
 * the lengths MAPPING.md truncates to, and the lookups. */
static void test_shipped_schema(void **state)
{
    (void)state;
    struct lines l;
    schema_of(shipped(), &l);
    const char *want =
        "accounts mlc_sapvendorid key 0 - - - -\n"
        "accounts name text 160 - - - -\n"
        "accounts address1_line1 text 250 - - - -\n"
        "accounts address1_city text 80 - - - -\n"
        "accounts address1_postalcode text 20 - - - -\n"
        "accounts address1_stateorprovince text 50 - - - -\n"
        "accounts address1_country text 80 - - - -\n"
        "accounts telephone1 text 50 - - - -\n"
        "accounts fax text 50 - - - -\n"
        "accounts mlc_issapvendor bool 0 - - - -\n"
        "accounts mlc_sappaymentterms text 0 - - - -\n"
        "accounts paymenttermscode any 0 - - - -\n"   /* the payment_terms table is empty */
        "accounts customertypecode integer 0 - - - -\n"
        "accounts statecode integer 0 - - - -\n"
        "accounts statuscode integer 0 - - - -\n"
        "accounts mlc_sapcustomerid key 0 - - - -\n"  /* the vendor link's other_key_column */
        "accounts mlc_issapcustomer bool 0 - - - -\n"
        "contacts mlc_sapcontactid key 0 - - - -\n"
        "contacts firstname text 50 - - - -\n"
        "contacts lastname text 50 - - - -\n"
        "contacts telephone1 text 50 - - - -\n"
        "contacts parentcustomerid_account lookup 0 accounts mlc_sapvendorid - -\n"
        "opportunities mlc_sapponumber key 0 - - - -\n"
        "opportunities name text 300 - - - -\n"
        "opportunities customerid_account lookup 0 accounts mlc_sapvendorid - -\n"
        "opportunities transactioncurrencyid lookup 0 transactioncurrencies - isocurrencycode -\n"
        "opportunities estimatedvalue decimal 0 - - - -\n"
        "opportunities estimatedclosedate date 0 - - - -\n"
        "opportunityproducts mlc_sappoitemid key 0 - - - -\n"
        "opportunityproducts opportunityid lookup 0 opportunities mlc_sapponumber - -\n"
        "opportunityproducts isproductoverridden bool 0 - - - -\n"
        "opportunityproducts productdescription text 500 - - - -\n"
        "opportunityproducts quantity decimal 0 - - - -\n"
        "opportunityproducts priceperunit decimal 0 - - - -\n"
        "opportunityproducts ispriceoverridden bool 0 - - - -\n";
    assert_string_equal(l.buf, want);

    /* the summary setup prints: custom columns and keys */
    int custom = 0, keys = 0;
    for (char *p = l.buf; *p;) {
        char *nl = strchr(p, '\n');
        char set[64], col[64], kind[16];
        assert_int_equal(sscanf(p, "%63s %63s %15s", set, col, kind), 3);
        if (!strncmp(col, "mlc_", 4)) custom++;
        if (!strcmp(kind, "key")) keys++;
        p = nl + 1;
    }
    assert_int_equal(custom, 8);
    assert_int_equal(keys, 5);
}

/* orders_target salesorder / quote: headers and lines of those sets, the
 * price list looked up by the name the mapping file gives. */
static void test_shipped_orders_targets(void **state)
{
    (void)state;
    static const struct {
        const char *target, *header, *lines, *parent_nav;
    } T[] = {
        {"salesorder", "salesorders", "salesorderdetails", "salesorderid"},
        {"quote", "quotes", "quotedetails", "quoteid"},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        char text[2048], want[512];
        snprintf(text, sizeof text, "{\"version\": 1, \"extends\": \"%s\", \"orders_target\": \"%s\"}", shipped(),
                 T[i].target);
        struct lines l;
        schema_of(tmpfile_with(0, text), &l);
        assert_null(strstr(l.buf, "opportunities"));
        snprintf(want, sizeof want, "%s mlc_sapponumber key 0 - - - -\n", T[i].header);
        assert_non_null(strstr(l.buf, want));
        snprintf(want, sizeof want, "%s pricelevelid lookup 0 pricelevels - name SAP Standard\n", T[i].header);
        assert_non_null(strstr(l.buf, want));
        snprintf(want, sizeof want, "%s requestdeliveryby date 0 - - - -\n", T[i].header);
        assert_non_null(strstr(l.buf, want));
        snprintf(want, sizeof want, "%s mlc_sappoitemid key 0 - - - -\n", T[i].lines);
        assert_non_null(strstr(l.buf, want));
        snprintf(want, sizeof want, "%s %s lookup 0 %s mlc_sapponumber - -\n", T[i].lines, T[i].parent_nav,
                 T[i].header);
        assert_non_null(strstr(l.buf, want));
    }
    /* another price list name in the site file */
    char text[2048];
    snprintf(text, sizeof text,
             "{\"version\": 1, \"extends\": \"%s\", \"orders_target\": \"quote\", \"price_list\": \"EU 2026\"}",
             shipped());
    struct lines l;
    schema_of(tmpfile_with(1, text), &l);
    assert_non_null(strstr(l.buf, "quotes pricelevelid lookup 0 pricelevels - name EU 2026\n"));
}

/* Every kind of value, variables from the parent record, lengths from
 * column_lengths and max_length, a bind by a standard column (the target
 * needs that key), a link's other key column, a lookup by a constant. */
static void test_custom_mapping_kinds(void **state)
{
    (void)state;
    const char *text =
        "{\"version\": 1, \"orders_target\": \"opportunity\",\n"
        " \"column_lengths\": {\"accounts\": {\"mlc_code\": 12, \"name\": 160}},\n"
        " \"value_tables\": {\"grp\": {\"A\": 1, \"B\": 2}, \"labels\": {\"A\": \"Alpha\"}},\n"
        " \"routes\": [{\"name\": \"thing\", \"match\": {\"idoctyp\": [\"ZTHING01\"]}, \"records\": [{\n"
        "  \"name\": \"thing\", \"for_each\": \"E1THING\", \"entity\": \"accounts\",\n"
        "  \"vars\": {\"num\": {\"path\": \"NUM\", \"transform\": [\"alpha10\"]}},\n"
        "  \"key\": {\"column\": \"mlc_code\", \"business_key\": \"thing\", \"value\": {\"var\": \"num\"}},\n"
        "  \"columns\": {\n"
        "   \"name\": \"NAME\",\n"
        "   \"mlc_rate\": {\"const\": \"1.5\", \"transform\": [\"decimal\"]},\n"
        "   \"mlc_count\": 3, \"mlc_flag\": false,\n"
        "   \"mlc_since\": {\"path\": \"DATUM\", \"transform\": [\"date\"]},\n"
        "   \"mlc_group\": {\"path\": \"GRP\", \"transform\": [{\"table\": \"grp\"}]},\n"
        "   \"mlc_label\": {\"path\": \"GRP\", \"transform\": [{\"table\": \"labels\"}]},\n"
        "   \"mlc_nothing\": null,\n"
        "   \"mlc_note\": {\"path\": \"NOTE\", \"max_length\": 5000},\n"
        "   \"mlc_total\": {\"sum\": \"E1POS/AMOUNT\"},\n"
        "   \"mlc_state\": {\"when\": [{\"if\": {\"path\": \"DEL\", \"equals\": \"X\"}, \"then\": 1}], \"else\": 0},\n"
        "   \"parentaccountid@odata.bind\": {\"bind\": {\"entity\": \"accounts\", \"key\": \"accountnumber\", "
        "\"value\": \"PARENT\"}}},\n"
        "  \"link\": {\"other_party\": \"other\", \"other\": {\"path\": \"OTHER\"}, \"other_key_column\": "
        "\"mlc_othercode\", \"columns\": {\"mlc_linked\": true}},\n"
        "  \"children\": [{\"name\": \"person\", \"for_each\": \"E1PERSON\", \"required\": false, \"entity\": "
        "\"contacts\",\n"
        "   \"key\": {\"column\": \"mlc_personid\", \"value\": {\"concat\": [{\"var\": \"num\"}, \"ID\"], \"sep\": "
        "\"-\"}},\n"
        "   \"columns\": {\n"
        "    \"parentcustomerid_account@odata.bind\": {\"bind\": {\"entity\": \"accounts\", \"key\": \"mlc_code\", "
        "\"value\": {\"var\": \"num\"}}},\n"
        "    \"transactioncurrencyid@odata.bind\": {\"lookup\": {\"entity\": \"transactioncurrencies\", \"id\": "
        "\"transactioncurrencyid\", \"match\": \"isocurrencycode\", \"value\": {\"const\": \"EUR\"}}}}}]\n"
        " }]}]}\n";
    struct lines l;
    schema_of(tmpfile_with(2, text), &l);
    const char *want =
        "accounts mlc_code key 12 - - - -\n"
        "accounts name text 160 - - - -\n"
        "accounts mlc_rate decimal 0 - - - -\n"
        "accounts mlc_count integer 0 - - - -\n"
        "accounts mlc_flag bool 0 - - - -\n"
        "accounts mlc_since date 0 - - - -\n"
        "accounts mlc_group integer 0 - - - -\n"
        "accounts mlc_label text 0 - - - -\n"
        "accounts mlc_nothing any 0 - - - -\n"
        "accounts mlc_note text 5000 - - - -\n"
        "accounts mlc_total decimal 0 - - - -\n"
        "accounts mlc_state integer 0 - - - -\n"
        "accounts parentaccountid lookup 0 accounts accountnumber - -\n"
        "accounts accountnumber key 0 - - - -\n"
        "accounts mlc_othercode key 0 - - - -\n"
        "accounts mlc_linked bool 0 - - - -\n"
        "contacts mlc_personid key 0 - - - -\n"
        "contacts parentcustomerid_account lookup 0 accounts mlc_code - -\n"
        "contacts transactioncurrencyid lookup 0 transactioncurrencies - isocurrencycode EUR\n";
    assert_string_equal(l.buf, want);
}

static int stop_at_third(const struct mapping_schema_item *it, void *ud)
{
    (void)it;
    int *n = ud;
    return ++*n == 3 ? 7 : 0;
}

static void test_callback_stops(void **state)
{
    (void)state;
    char err[512];
    struct mapping *m = mapping_load(shipped(), err, sizeof err);
    if (!m) fail_msg("%s", err);
    int n = 0;
    assert_int_equal(mapping_schema(m, stop_at_third, &n), 7);
    assert_int_equal(n, 3);
    assert_int_equal(mapping_schema(NULL, stop_at_third, &n), -1);
    assert_int_equal(mapping_schema(m, NULL, NULL), -1);
    mapping_free(m);
    assert_string_equal(mapping_schema_kind_name(MAPPING_SCHEMA_KEY), "key");
    assert_string_equal(mapping_schema_kind_name(MAPPING_SCHEMA_ANY), "any");
}

/* ---- metadata request bodies ---------------------------------------------- */

static const char *label_of(const cJSON *label)
{
    const cJSON *ll = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(label, "LocalizedLabels"), 0);
    assert_non_null(ll);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(ll, "@odata.type")->valuestring,
                        "Microsoft.Dynamics.CRM.LocalizedLabel");
    return cJSON_GetObjectItemCaseSensitive(ll, "Label")->valuestring;
}

static cJSON *column_json(const struct d365_md_column *c)
{
    char *s = d365_metadata_column_json(c);
    assert_non_null(s);
    cJSON *j = cJSON_Parse(s);
    free(s);
    assert_non_null(j);
    return j;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static void test_column_json(void **state)
{
    (void)state;
    struct d365_md_column c = {.schema_name = "mlc_SapVendorId", .display_name = "SAP Vendor ID",
                               .description = "key", .type = D365_MD_STRING, .max_length = 100};
    cJSON *j = column_json(&c);
    assert_string_equal(str(j, "@odata.type"), "Microsoft.Dynamics.CRM.StringAttributeMetadata");
    assert_string_equal(str(j, "AttributeType"), "String");
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(j, "AttributeTypeName"), "Value"), "StringType");
    assert_string_equal(str(j, "SchemaName"), "mlc_SapVendorId");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "MaxLength")->valueint, 100);
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(j, "FormatName"), "Value"), "Text");
    assert_string_equal(label_of(cJSON_GetObjectItemCaseSensitive(j, "DisplayName")), "SAP Vendor ID");
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(j, "RequiredLevel"), "Value"), "None");
    const cJSON *ll = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "DisplayName"), "LocalizedLabels"), 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(ll, "LanguageCode")->valueint, 1033);
    cJSON_Delete(j);

    c = (struct d365_md_column){.schema_name = "mlc_IsSapVendor", .display_name = "Is SAP Vendor",
                                .type = D365_MD_BOOLEAN, .language = 1031};
    j = column_json(&c);
    assert_string_equal(str(j, "@odata.type"), "Microsoft.Dynamics.CRM.BooleanAttributeMetadata");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "DefaultValue")));
    const cJSON *os = cJSON_GetObjectItemCaseSensitive(j, "OptionSet");
    assert_string_equal(str(os, "OptionSetType"), "Boolean");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(os, "TrueOption");
    const cJSON *fo = cJSON_GetObjectItemCaseSensitive(os, "FalseOption");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(to, "Value")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(fo, "Value")->valueint, 0);
    assert_string_equal(label_of(cJSON_GetObjectItemCaseSensitive(to, "Label")), "Yes");
    assert_string_equal(label_of(cJSON_GetObjectItemCaseSensitive(fo, "Label")), "No");
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "Description"));
    ll = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "DisplayName"), "LocalizedLabels"), 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(ll, "LanguageCode")->valueint, 1031);
    cJSON_Delete(j);

    c = (struct d365_md_column){.schema_name = "mlc_Rate", .type = D365_MD_DECIMAL};
    j = column_json(&c);
    assert_string_equal(str(j, "@odata.type"), "Microsoft.Dynamics.CRM.DecimalAttributeMetadata");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "Precision")->valueint, 5);
    assert_true(cJSON_GetObjectItemCaseSensitive(j, "MaxValue")->valuedouble == 100000000000.0);
    assert_string_equal(label_of(cJSON_GetObjectItemCaseSensitive(j, "DisplayName")), "mlc_Rate");
    cJSON_Delete(j);

    c = (struct d365_md_column){.schema_name = "mlc_Since", .type = D365_MD_DATE};
    j = column_json(&c);
    assert_string_equal(str(j, "Format"), "DateOnly");
    cJSON_Delete(j);
    c = (struct d365_md_column){.schema_name = "mlc_Count", .type = D365_MD_INTEGER};
    j = column_json(&c);
    assert_string_equal(str(j, "AttributeType"), "Integer");
    cJSON_Delete(j);
    c = (struct d365_md_column){.schema_name = "mlc_Note", .type = D365_MD_MEMO, .max_length = 5000};
    j = column_json(&c);
    assert_string_equal(str(j, "@odata.type"), "Microsoft.Dynamics.CRM.MemoAttributeMetadata");
    cJSON_Delete(j);

    /* refused: no name, text length out of range */
    c = (struct d365_md_column){.schema_name = "", .type = D365_MD_BOOLEAN};
    assert_null(d365_metadata_column_json(&c));
    c = (struct d365_md_column){.schema_name = "mlc_X", .type = D365_MD_STRING, .max_length = 4001};
    assert_null(d365_metadata_column_json(&c));
    c = (struct d365_md_column){.schema_name = "mlc_X", .type = D365_MD_STRING, .max_length = 0};
    assert_null(d365_metadata_column_json(&c));
}

static void test_key_json(void **state)
{
    (void)state;
    const char *attrs[] = {"mlc_sapvendorid"};
    char *s = d365_metadata_key_json("mlc_account_SapVendorId", "SAP Vendor ID", attrs, 1, 0);
    assert_non_null(s);
    cJSON *j = cJSON_Parse(s);
    free(s);
    assert_non_null(j);
    assert_string_equal(str(j, "@odata.type"), "Microsoft.Dynamics.CRM.EntityKeyMetadata");
    assert_string_equal(str(j, "SchemaName"), "mlc_account_SapVendorId");
    const cJSON *ka = cJSON_GetObjectItemCaseSensitive(j, "KeyAttributes");
    assert_int_equal(cJSON_GetArraySize(ka), 1);
    assert_string_equal(cJSON_GetArrayItem(ka, 0)->valuestring, "mlc_sapvendorid");
    assert_string_equal(label_of(cJSON_GetObjectItemCaseSensitive(j, "DisplayName")), "SAP Vendor ID");
    cJSON_Delete(j);
    assert_null(d365_metadata_key_json("mlc_k", NULL, attrs, 0, 0));
    assert_null(d365_metadata_key_json("", NULL, attrs, 1, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_schema),
        cmocka_unit_test(test_shipped_orders_targets),
        cmocka_unit_test(test_custom_mapping_kinds),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_column_json),
        cmocka_unit_test(test_key_json),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < 4; i++) {
        char p[256];
        snprintf(p, sizeof p, "/tmp/test_dataverse_schema_%d_%d.json", (int)getpid(), i);
        remove(p);
    }
    return rc;
}
