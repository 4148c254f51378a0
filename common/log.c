/*
 * log — formatted, single-write log lines on stderr.
 *
 * The level and format are atomics so that SIGHUP reload can change them
 * while worker threads log. A line is built in a stack buffer (truncated at
 * 4 KiB, marked with "...") and written with one write(2) so concurrent lines
 * never interleave. JSON escaping is done here, by hand, because a log line
 * must not allocate (it may report an out-of-memory condition).
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = LOG_INFO;
static atomic_int g_json = 0;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_set_level(const char *name)
{
    for (int i = 0; i <= LOG_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            atomic_store(&g_level, i);
            return 0;
        }
    }
    return -1;
}

int log_set_format(const char *name)
{
    if (strcmp(name, "text") == 0) atomic_store(&g_json, 0);
    else if (strcmp(name, "json") == 0) atomic_store(&g_json, 1);
    else return -1;
    return 0;
}

int log_enabled(int level) { return level <= atomic_load(&g_level); }

/* Append s to buf as a JSON string body (without quotes). */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') { out[o++] = '\\'; out[o++] = (char)ch; }
        else if (ch == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
        else if (ch == '\t') { out[o++] = '\\'; out[o++] = 't'; }
        else if (ch < 0x20) o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        else out[o++] = (char)ch;
    }
    out[o] = 0;
    return o;
}

/* The well-known key=value pairs of a message become JSON fields of their
 * own, so a log pipeline can filter by DOCNUM, queue sequence or status
 * without parsing text. Values run to the next blank; digits-only values of
 * seq/status are numbers. */
static void json_fields(char *out, size_t cap, const char *msg)
{
    static const char *const keys[] = {"docnum", "seq", "status", "mestyp", "key", "run"};
    size_t o = 0;
    out[0] = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        size_t kl = strlen(keys[k]);
        for (const char *p = msg; (p = strstr(p, keys[k])) != NULL; p += kl) {
            if ((p != msg && p[-1] != ' ') || p[kl] != '=') continue;
            const char *v = p + kl + 1, *e = v;
            while (*e && *e != ' ' && *e != '"' && *e != '\\' && (unsigned char)*e >= 0x20) e++;
            if (e == v) break;
            int num = k <= 2 && k != 0;
            for (const char *q = v; num && q < e; q++) num = *q >= '0' && *q <= '9';
            int n = snprintf(out + o, cap - o, num ? ",\"%s\":%.*s" : ",\"%s\":\"%.*s\"", keys[k], (int)(e - v), v);
            if (n < 0 || (size_t)n >= cap - o) { out[o] = 0; return; }
            o += (size_t)n;
            break;
        }
    }
}

static void emit(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

void log_msg(int level, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, fmt, ap);
    va_end(ap);
}

void log_always(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, fmt, ap);
    va_end(ap);
}

static void emit(int level, const char *fmt, va_list ap)
{
    char msg[4096];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n >= (int)sizeof msg) memcpy(msg + sizeof msg - 4, "...", 4);
    /* One event, one line: fold embedded newlines. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);

    char line[8400];
    int len;
    if (atomic_load(&g_json)) {
        char esc[8192], fields[1024];
        json_escape(esc, sizeof esc, msg);
        json_fields(fields, sizeof fields, msg);
        len = snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\"%s,\"msg\":\"%s\"}\n",
                       when, level_names[level], fields, esc);
    } else {
        len = snprintf(line, sizeof line, "%s %-5s %s\n", when, level_names[level], msg);
    }
    if (len < 0) return;
    if (len >= (int)sizeof line) { len = (int)sizeof line - 1; line[len - 1] = '\n'; }
    ssize_t wr = write(STDERR_FILENO, line, (size_t)len);
    (void)wr;
}
