/*
 * libFuzzer: the HTTP/1.1 request reader (src/gateway/http.c over http_parser) never crashes,
 * never lets a request through with a control byte in its path or decoded query or a body past
 * its bound, and answers pipelined requests one at a time. The driver lives in http.c (built
 * with CATRACA_FUZZ) because the reader's state is the connection's, private to that file.
 */
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int http_fuzz_one(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return http_fuzz_one(data, size);
}
