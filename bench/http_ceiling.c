/*
 * http_ceiling — the HTTP ceiling for the ingest benchmark: a minimal
 * libmicrohttpd server in the gateway's threading mode (internal polling
 * threads, epoll, a pool of 2) that reads every POST body, drops it and
 * answers 200. Whatever the gateway does beyond this is its own cost.
 *
 *   http_ceiling [THREADS]
 *
 * Binds 127.0.0.1 port 0, prints "port N" on stdout, runs until SIGTERM or
 * SIGINT, then prints "requests N bytes N" and exits 0.
 */
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_ullong nreq, nbytes;
static struct MHD_Response *ok_resp;
static char ctx_marker; /* non-NULL request context: "body seen" */

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **req_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    if (!*req_cls) { /* headers only: accept the body */
        *req_cls = &ctx_marker;
        return MHD_YES;
    }
    if (*upload_data_size) { /* a piece of the body: consume all of it */
        volatile char sink = upload_data[*upload_data_size - 1];
        (void)sink;
        atomic_fetch_add_explicit(&nbytes, *upload_data_size, memory_order_relaxed);
        *upload_data_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add_explicit(&nreq, 1, memory_order_relaxed);
    return MHD_queue_response(conn, MHD_HTTP_OK, ok_resp);
}

int main(int argc, char **argv)
{
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    if (threads < 1) threads = 1;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before MHD's threads exist */
    signal(SIGPIPE, SIG_IGN);

    static const char body[] = "OK\n";
    ok_resp = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!ok_resp) return 1;
    MHD_add_response_header(ok_resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, handler,
        NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, 512u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "http_ceiling: cannot start libmicrohttpd on 127.0.0.1\n");
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("port %u\n", di ? (unsigned)di->port : 0u);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    MHD_stop_daemon(d);
    MHD_destroy_response(ok_resp);
    printf("requests %llu bytes %llu\n", (unsigned long long)atomic_load(&nreq),
           (unsigned long long)atomic_load(&nbytes));
    return 0;
}
