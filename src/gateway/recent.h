/*
 * recent.h - the last committed state of recently decided purchases, in
 * memory, so that reading a purchase the worker decided recently costs no
 * store read (a GET, and the re-check of a long-poll as it parks).
 *
 * Fed only by the worker's commits, in commit order (recent_update), after
 * each commit: an entry is never older than the store's row for as long as
 * it exists, so a reader that goes to the store on a miss and to the table
 * on a hit never sees a purchase's status go back. That holds only when
 * every commit reaches recent_update: the embedded service's worker calls it
 * directly; a gateway fed by a lossy publish/subscribe must not use this.
 *
 * A fixed table of slots_max entries sized at init (about 400 bytes each); a
 * purchase takes the slot its id names, replacing whatever was there. Waiting
 * purchases are not answered from here: their place in line moves with reads.
 * Thread-safe (striped mutexes).
 */
#ifndef CATRACA_GATEWAY_RECENT_H
#define CATRACA_GATEWAY_RECENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "worker/worker.h"

#define RECENT_STRIPES 16

struct recent {
    struct store_purchase *slots; /* purchase_id 0: empty */
    uint32_t slots_max;
    pthread_mutex_t stripes[RECENT_STRIPES];
};

/* 0, CATRACA_E_INVALID (slots_max 0) or CATRACA_E_NOMEM. */
int recent_init(struct recent *recent, uint32_t slots_max);
void recent_destroy(struct recent *recent);
/* Records every purchase row of one commit; call for every commit, in order. */
void recent_update(struct recent *recent, const struct worker_commit *commit);
/* True, with *out, when the purchase's last committed state is here and not waiting. */
bool recent_find(struct recent *recent, uint64_t purchase_id, struct store_purchase *out);

#endif
