/*
 * logline: every line is one line, bounded, escaped, valid JSON in json
 * format, and lines of many threads never interleave. The random-value test
 * prints its seed; CATRACA_SEED=n reproduces it.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/logline.h"

static struct logline_record record_of(const char *message, const char *key, const char *value)
{
    struct logline_record r = {.time_ms = 1764606573123LL, /* 2025-12-01T16:29:33.123Z */
                               .level = LOGLINE_WARN,
                               .component = "test",
                               .message = message,
                               .request_id = "req-1"};
    if (key != NULL) {
        r.fields[0] = key;
        r.fields[1] = value;
        r.field_count = 1;
    }
    return r;
}

static void test_logfmt_shape(void **state)
{
    (void)state;
    char line[LOGLINE_BYTES_MAX];
    struct logline_record r = record_of("a \"quoted\"\nline", "port", "8080");
    size_t n = logline_render(LOGLINE_LOGFMT, &r, line, sizeof(line));
    line[n] = '\0';
    assert_string_equal(line, "time=2025-12-01T16:29:33.123Z level=warn component=test "
                              "msg=\"a \\\"quoted\\\"\\nline\" request_id=req-1 port=8080\n");
    r = record_of("m", "empty", "");
    n = logline_render(LOGLINE_LOGFMT, &r, line, sizeof(line));
    line[n] = '\0';
    assert_non_null(strstr(line, " empty=\"\"\n"));
    r = record_of("m", "eq", "a=b");
    n = logline_render(LOGLINE_LOGFMT, &r, line, sizeof(line));
    line[n] = '\0';
    assert_non_null(strstr(line, " eq=\"a=b\"\n"));
    /* A key cannot smuggle a field either. */
    r = record_of("m", "k ey=\n", "v");
    n = logline_render(LOGLINE_LOGFMT, &r, line, sizeof(line));
    line[n] = '\0';
    assert_non_null(strstr(line, " k_ey__=v\n"));
}

static void test_json_shape(void **state)
{
    (void)state;
    char line[LOGLINE_BYTES_MAX + 1];
    struct logline_record r = record_of("caf\xc3\xa9 \x01 bad\xff", "k", "v\\");
    size_t n = logline_render(LOGLINE_JSON, &r, line, LOGLINE_BYTES_MAX);
    line[n] = '\0';
    assert_string_equal(line, "{\"time\":\"2025-12-01T16:29:33.123Z\",\"level\":\"warn\","
                              "\"component\":\"test\",\"msg\":\"caf\xc3\xa9 \\u0001 "
                              "bad\\ufffd\",\"request_id\":\"req-1\",\"k\":\"v\\\\\"}\n");
    cJSON *json = cJSON_Parse(line);
    assert_non_null(json);
    assert_string_equal(cJSON_GetObjectItem(json, "msg")->valuestring,
                        "caf\xc3\xa9 \x01 bad\xef\xbf\xbd");
    cJSON_Delete(json);
}

static void test_bounds(void **state)
{
    (void)state;
    char big[20000];
    memset(big, '\n', sizeof(big) - 1); /* escapes to 2 bytes each */
    big[sizeof(big) - 1] = '\0';
    char line[LOGLINE_BYTES_MAX + 1];
    for (int format = 0; format < 2; format++) {
        struct logline_record r = record_of(big, "next", big);
        for (int i = 1; i < LOGLINE_FIELDS_MAX; i++) {
            r.fields[2 * i] = "more";
            r.fields[2 * i + 1] = big;
            r.field_count++;
        }
        size_t n = logline_render((enum logline_format)format, &r, line, LOGLINE_BYTES_MAX);
        assert_true(n <= LOGLINE_BYTES_MAX);
        line[n] = '\0';
        assert_int_equal(line[n - 1], '\n');
        assert_ptr_equal(strchr(line, '\n'), line + n - 1);
        assert_non_null(strstr(line, "truncated"));
        assert_non_null(strstr(line, "...")); /* the message was cut, and says so */
        if (format == LOGLINE_JSON) {
            cJSON *json = cJSON_Parse(line);
            assert_non_null(json);
            assert_true(cJSON_IsTrue(cJSON_GetObjectItem(json, "truncated")));
            cJSON_Delete(json);
        }
    }
}

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random bytes as values: always one line, within the bound, valid JSON with the same text. */
static void test_random_values(void **state)
{
    (void)state;
    const char *env = getenv("CATRACA_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    printf("logline random values: seed %llu (CATRACA_SEED=%llu reproduces)\n",
           (unsigned long long)seed, (unsigned long long)seed);
    uint64_t s = seed | 1;
    char value[700], line[LOGLINE_BYTES_MAX + 1];
    for (int round = 0; round < 20000; round++) {
        size_t length = next_random(&s) % sizeof(value);
        for (size_t i = 0; i < length; i++) {
            char c = (char)(next_random(&s) & 0xff);
            value[i] = c == '\0' ? 'x' : c;
        }
        value[length] = '\0';
        struct logline_record r = record_of("m", "v", value);
        enum logline_format format = round % 2 ? LOGLINE_JSON : LOGLINE_LOGFMT;
        size_t n = logline_render(format, &r, line, LOGLINE_BYTES_MAX);
        line[n] = '\0';
        assert_true(n <= LOGLINE_BYTES_MAX);
        assert_ptr_equal(strchr(line, '\n'), line + n - 1);
        if (format == LOGLINE_JSON) {
            cJSON *json = cJSON_Parse(line);
            assert_non_null(json);
            cJSON *v = cJSON_GetObjectItem(json, "v");
            assert_true(cJSON_IsString(v) || cJSON_IsTrue(cJSON_GetObjectItem(json, "truncated")));
            cJSON_Delete(json);
        }
    }
}

struct writer_args {
    int id;
};

static void *write_lines(void *argument)
{
    const struct writer_args *args = argument;
    char id[16], filler[400];
    snprintf(id, sizeof(id), "t%d", args->id);
    memset(filler, 'a' + args->id, sizeof(filler) - 1);
    filler[sizeof(filler) - 1] = '\0';
    logline_set_request_id(id);
    for (int i = 0; i < 500; i++)
        logline(LOGLINE_INFO, "test", "line", "filler", filler, NULL);
    return NULL;
}

/* Lines of 8 threads through one pipe: each arrives whole, its request id its own thread's. */
static void test_threads_never_interleave(void **state)
{
    (void)state;
    char path[] = "/tmp/logline-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    logline_configure(LOGLINE_LOGFMT, fd);
    pthread_t threads[8];
    struct writer_args args[8];
    for (int i = 0; i < 8; i++) {
        args[i].id = i;
        assert_int_equal(pthread_create(&threads[i], NULL, write_lines, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(threads[i], NULL);
    logline_configure(LOGLINE_LOGFMT, 2);
    FILE *in = fdopen(fd, "r");
    assert_non_null(in);
    rewind(in);
    char line[LOGLINE_BYTES_MAX + 1];
    int count = 0;
    while (fgets(line, sizeof(line), in) != NULL) {
        int thread = -1;
        char *at = strstr(line, "request_id=t");
        assert_non_null(at);
        thread = at[12] - '0';
        char expected[400];
        memset(expected, 'a' + thread, sizeof(expected) - 1);
        expected[sizeof(expected) - 1] = '\0';
        assert_non_null(strstr(line, expected));
        count++;
    }
    assert_int_equal(count, 8 * 500);
    fclose(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_shape),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_random_values),
        cmocka_unit_test(test_threads_never_interleave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
