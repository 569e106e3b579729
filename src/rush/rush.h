/*
 * rush.h - `catraca rush`: rehearses an on-sale against a running Catraca.
 *
 * One thread, one epoll instance, --connections keep-alive HTTP/1.1
 * connections with one request each in flight at most: it creates an event,
 * sends every buyer's purchase (all at once or at --rate), follows each to its
 * final status with long-polls, pays for or cancels holds after a delay or
 * lets them expire, then reads the event back, checks the answers (no oversell,
 * arrival order, every purchase final) and prints a report (and --json FILE).
 * Memory is sized once from the options: about 100 bytes a buyer.
 *
 * `--healthz-only --seconds N` only sends GET /healthz on every connection for
 * N seconds and reports requests per second (bench/rush_vs_wrk.sh compares it
 * with wrk).
 */
#ifndef CATRACA_RUSH_RUSH_H
#define CATRACA_RUSH_RUSH_H

/* Exit codes of rush_main(). */
enum rush_exit {
    RUSH_EXIT_PASSED = 0,  /* every check passed (or --help) */
    RUSH_EXIT_FAILED = 1,  /* a check failed */
    RUSH_EXIT_USAGE = 2,   /* bad command line */
    RUSH_EXIT_NOT_RUN = 3, /* no server, the event refused, out of memory, ... */
};

/* argv[0] is "rush"; the rest are its options (catraca rush --help). */
int rush_main(int argc, char **argv);

#endif
