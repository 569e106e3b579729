/*
 * libFuzzer: Kafka topic names <-> event ids (log/log_kafka.h). The encoding must be a
 * bijection on what it accepts: a name that decodes encodes back to itself, an id that
 * encodes decodes back to itself, and an encoded name never holds '.' or '_' after the
 * prefix (Kafka refuses names that differ only by those). Input: a prefix, a NUL, then the
 * text tried both as a topic name and as an event id.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log/log_kafka.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024)
        return 0;
    char *input = malloc(size + 1);
    memcpy(input, data, size);
    input[size] = '\0';
    const char *prefix = input, *text = memchr(input, '\0', size) != NULL && strlen(input) < size
                                            ? input + strlen(input) + 1
                                            : "";
    char event[CATRACA_ID_MAX + 1], topic[LOG_KAFKA_TOPIC_MAX], again[LOG_KAFKA_TOPIC_MAX];
    if (strlen(prefix) <= LOG_KAFKA_PREFIX_MAX && log_kafka_topic_event(prefix, text, event) == 0) {
        if (log_kafka_event_topic(prefix, event, again) != 0 || strcmp(again, text) != 0)
            abort();
    }
    if (log_kafka_event_topic(prefix, text, topic) == 0) {
        if (strlen(topic) >= LOG_KAFKA_TOPIC_MAX)
            abort();
        if (strpbrk(topic + strlen(prefix) + strlen("event."), "._") != NULL)
            abort();
        if (log_kafka_topic_event(prefix, topic, event) != 0 || strcmp(event, text) != 0)
            abort();
    }
    free(input);
    return 0;
}
