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

#endif
