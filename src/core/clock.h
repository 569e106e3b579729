/*
 * clock.h - the clocks the services read (never the engine: it is given its
 * time in each command, so a replay decides the same).
 */
#ifndef CATRACA_CORE_CLOCK_H
#define CATRACA_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic microseconds: durations and deadlines in this process. */
static inline int64_t clock_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t clock_monotonic_ms(void)
{
    return clock_monotonic_us() / 1000;
}

/* Wall-clock milliseconds since the epoch: times written to the log and shown to people. */
static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The time `ms` milliseconds from now on `clock`: a deadline for pthread_cond_timedwait (on
 * the clock its condition variable was given: CLOCK_REALTIME unless set) or
 * pthread_timedjoin_np (CLOCK_REALTIME). */
static inline struct timespec clock_deadline_after_ms(clockid_t clock, int64_t ms)
{
    struct timespec deadline;
    clock_gettime(clock, &deadline);
    deadline.tv_sec += (time_t)(ms / 1000);
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return deadline;
}

#endif
