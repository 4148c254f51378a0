/*
 * log — one line per event on stderr, as text or JSON.
 *
 * Text:  2026-11-28T09:00:00.123Z info  ingest: 3 IDocs committed docnum=... seq=12 status=200
 * JSON:  {"time":"...","level":"info","msg":"ingest: 3 IDocs committed docnum=... seq=12 status=200"}
 *
 * Callers put DOCNUM, queue sequence and HTTP status into the message as
 * key=value pairs. Secrets must never be passed in. Each line is written with
 * a single write(2), so lines from different threads never interleave.
 *
 * Threads: any thread; log_set_* may be called at any time (atomics).
 */
#ifndef MLC_LOG_H
#define MLC_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Returns 0, or -1 for an unknown name (level stays unchanged). */
int log_set_level(const char *name);
int log_set_format(const char *name);   /* "text" or "json" */
int log_enabled(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like log_msg, but printed whatever the configured level: for the few lines
 * an operator or a script must always see (the "listening on" line). */
void log_always(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
