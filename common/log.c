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

void log_msg(int level, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
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
        char esc[8192];
        json_escape(esc, sizeof esc, msg);
        len = snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n",
                       when, level_names[level], esc);
    } else {
        len = snprintf(line, sizeof line, "%s %-5s %s\n", when, level_names[level], msg);
    }
    if (len < 0) return;
    if (len >= (int)sizeof line) { len = (int)sizeof line - 1; line[len - 1] = '\n'; }
    ssize_t wr = write(STDERR_FILENO, line, (size_t)len);
    (void)wr;
}
