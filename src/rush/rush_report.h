/*
 * rush_report.h - rush's own checks on what it observed, and the report
 * (text on a FILE, and the same as JSON).
 */
#ifndef CATRACA_RUSH_REPORT_H
#define CATRACA_RUSH_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "rush/rush_run.h"

enum rush_check_id {
    RUSH_CHECK_NO_OVERSELL = 0,
    RUSH_CHECK_FIFO,
    RUSH_CHECK_ALL_FINAL,
    RUSH_CHECK_ALL_ACCEPTED,
    RUSH_CHECK_HONEST_SOLD_OUT,
    RUSH_CHECK_COUNT,
};

struct rush_check {
    const char *name;
    bool is_passed;
    char detail[320];
};

struct rush_report {
    struct rush_check checks[RUSH_CHECK_COUNT];
    bool is_passed;
    uint64_t accepted;
    uint64_t final_total;
    uint64_t reasons[RUSH_REASON_COUNT];
    /*
     * Seconds since the first purchase request; negative when it never happened. Sell-out:
     * every category had run out of stock (a waiting or sold_out decision seen in each);
     * all decided: every accepted purchase had left `queued`; all final: every one was final.
     */
    double elapsed_s, sell_out_s, all_decided_s, all_final_s;
    double accepted_per_s, requests_per_s;
    /*
     * Tickets left unsold at the end (capacity - sold, read back) in categories where a buyer
     * was told sold_out: each a buyer was told "sold out" about while it was still there
     * (honest_sold_out fails on any). The same for line_full: reported, not a failure (a
     * bounded line turns buyers away while tickets may still come back; it says so).
     */
    uint64_t unsold_while_sold_out, unsold_while_line_full;
};

/*
 * Runs the checks on run and fills report. Needs a temporary array of 4 bytes a
 * buyer: returns 0, or -1 when it cannot be allocated.
 */
int rush_report_check(const struct rush_run *run, struct rush_report *report);
void rush_report_print(const struct rush_run *run, const struct rush_report *report, FILE *out);
/* Writes the report as one JSON object to path: 0, or -1 after a message on stderr. */
int rush_report_write_json(const struct rush_run *run, const struct rush_report *report,
                           const char *path);

#endif
