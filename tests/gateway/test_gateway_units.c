/* Unit tests of the gateway's pieces: JWT, rate limits, proof of work, waiters, JSON ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/error.h"
#include "gateway/api_json.h"
#include "gateway/challenge.h"
#include "gateway/jwt.h"
#include "gateway/jwt_secret.h"
#include "gateway/ratelimit.h"
#include "gateway/waiters.h"

static const uint8_t secret[] = "unit-secret";
#define SECRET_LENGTH (sizeof(secret) - 1)

static void test_jwt(void **state)
{
    (void)state;
    char token[2048];
    assert_true(jwt_sign(secret, SECRET_LENGTH, "c42", "payments", 2000, token, sizeof(token)) > 0);
    struct jwt_claims claims;
    assert_int_equal(jwt_verify(secret, SECRET_LENGTH, token, 1999, &claims), 0);
    assert_string_equal(claims.subject, "c42");
    assert_int_equal(claims.role, JWT_ROLE_PAYMENTS);
    assert_int_equal(jwt_verify(secret, SECRET_LENGTH, token, 2000, &claims), JWT_E_EXPIRED);
    assert_int_equal(jwt_verify((const uint8_t *)"other", 5, token, 1, &claims), JWT_E_SIGNATURE);
    char tampered[2048];
    strcpy(tampered, token);
    tampered[strlen(tampered) - 2] ^= 1;
    assert_int_equal(jwt_verify(secret, SECRET_LENGTH, tampered, 1, &claims), JWT_E_SIGNATURE);
    /* alg none: header {"alg":"none"} */
    const char *none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    assert_int_equal(jwt_verify(secret, SECRET_LENGTH, none, 1, &claims), JWT_E_ALGORITHM);
    assert_int_equal(jwt_verify(secret, SECRET_LENGTH, "a.b", 1, &claims), JWT_E_MALFORMED);
    assert_int_equal(jwt_verify(secret, SECRET_LENGTH, "a.b.c.d", 1, &claims), JWT_E_MALFORMED);
    char *huge = malloc(JWT_TOKEN_MAX + 10);
    memset(huge, 'a', JWT_TOKEN_MAX + 9);
    huge[JWT_TOKEN_MAX + 9] = '\0';
    assert_int_equal(jwt_verify(secret, SECRET_LENGTH, huge, 1, &claims), JWT_E_MALFORMED);
    free(huge);
    assert_true(jwt_sign(secret, SECRET_LENGTH, "c42", "buyer", 2000, token, 10) < 0);
}

/* A secret is refused when short, documented, or made of few distinct bytes; read from a file
 * without its one trailing newline. */
static void test_jwt_secret(void **state)
{
    (void)state;
    static const char good[] = "Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A";
    assert_null(jwt_secret_weakness((const uint8_t *)good, sizeof(good) - 1));
    assert_non_null(jwt_secret_weakness((const uint8_t *)good, 31));
    assert_null(jwt_secret_weakness((const uint8_t *)good, 32));
    assert_non_null(jwt_secret_weakness((const uint8_t *)"", 0));
    static const char documented[] = "replace-with-the-output-of-openssl-rand-base64-48";
    assert_non_null(jwt_secret_weakness((const uint8_t *)documented, sizeof(documented) - 1));
    static const char repeated[] = "abcdabcdabcdabcdabcdabcdabcdabcdabcd";
    assert_non_null(jwt_secret_weakness((const uint8_t *)repeated, sizeof(repeated) - 1));
    uint8_t long_secret[JWT_SECRET_MAX + 1];
    for (size_t i = 0; i < sizeof(long_secret); i++)
        long_secret[i] = (uint8_t)i;
    assert_null(jwt_secret_weakness(long_secret, JWT_SECRET_MAX));
    assert_non_null(jwt_secret_weakness(long_secret, JWT_SECRET_MAX + 1));

    char path[] = "/tmp/catraca-secret-XXXXXX", why[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *file = fdopen(fd, "w");
    fprintf(file, "%s\r\n", good);
    fclose(file);
    uint8_t read[JWT_SECRET_MAX];
    size_t length = 0;
    assert_int_equal(jwt_secret_read_file(path, read, &length, why, sizeof(why)), 0);
    assert_int_equal(length, sizeof(good) - 1);
    assert_memory_equal(read, good, length);
    file = fopen(path, "w");
    for (int i = 0; i < JWT_SECRET_MAX + 1; i++)
        fputc('k', file);
    fclose(file);
    assert_int_equal(jwt_secret_read_file(path, read, &length, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "longer than 256 bytes"));
    unlink(path);
    assert_int_equal(jwt_secret_read_file(path, read, &length, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "cannot read"));
}

static void test_ratelimit(void **state)
{
    (void)state;
    struct ratelimit limiter;
    assert_int_equal(ratelimit_init(&limiter, 64, 2.0, 3.0), 0);
    int64_t retry = 0;
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(&limiter, "k", 1000, &retry));
    assert_false(ratelimit_take(&limiter, "k", 1000, &retry));
    assert_true(retry > 0 && retry <= 501);
    assert_true(ratelimit_take(&limiter, "other", 1000, &retry));
    assert_true(ratelimit_take(&limiter, "k", 1000 + 500, &retry)); /* refilled one */
    /* many keys: the table keeps its size and new keys still get a full burst */
    char key[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "ip%d", i);
        assert_true(ratelimit_take(&limiter, key, 2000, &retry));
    }
    ratelimit_destroy(&limiter);
    assert_int_equal(ratelimit_init(&limiter, 64, 0, 1), 0); /* disabled */
    for (int i = 0; i < 100; i++)
        assert_true(ratelimit_take(&limiter, "k", 0, &retry));
    ratelimit_destroy(&limiter);
}

static char *solve(cJSON *c)
{
    const char *salt = cJSON_GetObjectItem(c, "salt")->valuestring;
    const char *target = cJSON_GetObjectItem(c, "challenge")->valuestring;
    int max = cJSON_GetObjectItem(c, "maxnumber")->valueint;
    for (int n = 0; n <= max; n++) {
        char text[256], hex[65];
        uint8_t digest[32];
        int length = snprintf(text, sizeof(text), "%s%d", salt, n);
        EVP_Digest(text, (size_t)length, digest, NULL, EVP_sha256(), NULL);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", digest[i]);
        if (strcmp(hex, target) == 0) {
            cJSON *payload = cJSON_CreateObject();
            cJSON_AddStringToObject(payload, "algorithm", "SHA-256");
            cJSON_AddStringToObject(payload, "challenge", target);
            cJSON_AddNumberToObject(payload, "number", n);
            cJSON_AddStringToObject(payload, "salt", salt);
            cJSON_AddStringToObject(payload, "signature",
                                    cJSON_GetObjectItem(c, "signature")->valuestring);
            char *json = cJSON_PrintUnformatted(payload);
            cJSON_Delete(payload);
            char *b64 = malloc(4 * strlen(json) / 3 + 8);
            EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)json, (int)strlen(json));
            free(json);
            return b64;
        }
    }
    return NULL;
}

static void test_challenge(void **state)
{
    (void)state;
    struct challenge c;
    assert_int_equal(challenge_init(&c, 500, 60, 4), 0);
    cJSON *json = challenge_create(&c, 1000);
    char *payload = solve(json);
    assert_non_null(payload);
    assert_int_equal(challenge_verify(&c, payload, 1061), CHALLENGE_E_EXPIRED);
    assert_int_equal(challenge_verify(&c, payload, 1000), 0);
    assert_int_equal(challenge_verify(&c, payload, 1000), CHALLENGE_E_REPLAYED);
    assert_int_equal(challenge_verify(&c, "bm90IGpzb24=", 1000), CHALLENGE_E_MALFORMED);
    free(payload);
    cJSON_Delete(json);
    struct challenge other;
    assert_int_equal(challenge_init(&other, 500, 60, 4), 0);
    json = challenge_create(&other, 1000);
    payload = solve(json);
    assert_int_equal(challenge_verify(&c, payload, 1000), CHALLENGE_E_SIGNATURE);
    free(payload);
    cJSON_Delete(json);
    /* Two gateways sharing a secret accept each other's challenges. */
    challenge_share_key(&c, (const uint8_t *)"shared", 6);
    challenge_share_key(&other, (const uint8_t *)"shared", 6);
    json = challenge_create(&other, 1000);
    payload = solve(json);
    assert_int_equal(challenge_verify(&c, payload, 1000), 0);
    free(payload);
    cJSON_Delete(json);
    challenge_destroy(&other);
    challenge_destroy(&c);
}

static int purchase_calls, answer_calls;

static bool on_purchase(struct waiter *w, const struct store_purchase *p)
{
    (void)w;
    purchase_calls++;
    return p->status == ENGINE_STATUS_WAITING; /* stay while not decided */
}

static void on_answer(struct waiter *w, const struct store_answer *a,
                      const struct store_purchase *p)
{
    (void)w;
    (void)a;
    (void)p;
    answer_calls++;
}

static void test_waiters(void **state)
{
    (void)state;
    struct waiters registry;
    assert_int_equal(waiters_init(&registry, 2), 0);
    struct waiter by_purchase = {.purchase_id = 5, .on_purchase = on_purchase};
    struct waiter by_answer = {.seq = {9, 0}, .on_answer = on_answer};
    strcpy(by_answer.event, "ev");
    struct waiter third = {.purchase_id = 6, .on_purchase = on_purchase};
    assert_int_equal(waiters_add(&registry, &by_purchase), 0);
    assert_int_equal(waiters_add(&registry, &by_answer), 0);
    assert_int_equal(waiters_add(&registry, &third), CATRACA_E_FULL);
    struct store_purchase rows[2] = {{.purchase_id = 5, .status = ENGINE_STATUS_WAITING},
                                     {.purchase_id = 8, .status = ENGINE_STATUS_HELD}};
    struct store_answer answers[1] = {{.seq = {9, 0}}};
    strcpy(answers[0].event, "ev");
    struct worker_commit commit = {.event = "ev",
                                   .purchases = rows,
                                   .purchase_count = 2,
                                   .answers = answers,
                                   .answer_count = 1};
    waiters_notify(&registry, &commit);
    assert_int_equal(purchase_calls, 1);
    assert_int_equal(answer_calls, 1);
    assert_int_equal(waiters_count(&registry), 1); /* the answer waiter left, the other stays */
    rows[0].status = ENGINE_STATUS_HELD;
    waiters_notify(&registry, &commit);
    assert_int_equal(waiters_count(&registry), 0);
    assert_false(waiters_remove(&registry, &by_purchase));
    waiters_destroy(&registry);
}

static void test_purchase_ids(void **state)
{
    (void)state;
    uint64_t ids[] = {1, 0x123456789abcdefULL, UINT64_MAX};
    for (int i = 0; i < 3; i++) {
        char text[API_PURCHASE_ID_TEXT];
        uint64_t back = 0;
        api_json_purchase_id_format(ids[i], text);
        assert_int_equal(api_json_purchase_id_parse(text, &back), 0);
        assert_true(back == ids[i]);
    }
    uint64_t value;
    assert_int_equal(api_json_purchase_id_parse("p_0000000000000", &value), CATRACA_E_INVALID);
    assert_int_equal(api_json_purchase_id_parse("p_GZZZZZZZZZZZZ", &value), CATRACA_E_INVALID);
    assert_int_equal(api_json_purchase_id_parse("p_123", &value), CATRACA_E_INVALID);
    /* Only the exact text of an id: nothing after it, before it, or in another case. */
    char text[API_PURCHASE_ID_TEXT], longer[64];
    api_json_purchase_id_format(ids[1], text);
    snprintf(longer, sizeof(longer), "%sjunk", text);
    assert_int_equal(api_json_purchase_id_parse(longer, &value), CATRACA_E_INVALID);
    snprintf(longer, sizeof(longer), "%s0", text);
    assert_int_equal(api_json_purchase_id_parse(longer, &value), CATRACA_E_INVALID);
    snprintf(longer, sizeof(longer), "%s\x01", text);
    assert_int_equal(api_json_purchase_id_parse(longer, &value), CATRACA_E_INVALID);
    snprintf(longer, sizeof(longer), " %s", text);
    assert_int_equal(api_json_purchase_id_parse(longer, &value), CATRACA_E_INVALID);
    snprintf(longer, sizeof(longer), "P%s", text + 1);
    assert_int_equal(api_json_purchase_id_parse(longer, &value), CATRACA_E_INVALID);
    snprintf(longer, sizeof(longer), "%s", text);
    longer[5] = (char)(longer[5] + ('a' - 'A')); /* a letter in lower case */
    assert_true(longer[5] >= 'a' && longer[5] <= 'z');
    assert_int_equal(api_json_purchase_id_parse(longer, &value), CATRACA_E_INVALID);
    assert_int_equal(api_json_purchase_id_parse(text, &value), 0);
    assert_true(api_json_is_id("a.b-c_9"));
    assert_false(api_json_is_id("a b"));
    assert_false(api_json_is_id(""));
}

/* A body given with its exact length (a C literal may hold a NUL). */
#define BODY(text) text, sizeof(text) - 1

static int purchase(const char *body, size_t length)
{
    char category[CATRACA_ID_MAX + 1], message[API_ERROR_MESSAGE_MAX];
    int64_t quantity = 0;
    return api_json_parse_purchase(body, length, category, &quantity, message);
}

static int event(const char *body, size_t length, struct engine_event_spec *spec)
{
    char message[API_ERROR_MESSAGE_MAX];
    return api_json_parse_event(body, length, spec, message);
}

/* Bad input is refused, never truncated: cJSON decodes \u0000 into a C string (which ends
 * there) and stops after the first value, so these were read as a shorter, valid body. */
static void test_json_refuses_truncation(void **state)
{
    (void)state;
    char category[CATRACA_ID_MAX + 1], message[API_ERROR_MESSAGE_MAX];
    int64_t quantity = 0;
    assert_int_equal(api_json_parse_purchase(BODY("{\"category\":\"pista\",\"quantity\":1}"),
                                             category, &quantity, message),
                     0);
    assert_string_equal(category, "pista");
    assert_int_equal(purchase(BODY("{\"category\":\"pista\",\"quantity\":1} \t\r\n")), 0);
    assert_int_equal(purchase(BODY("{\"category\":\"pista\\u0000x\",\"quantity\":1}")),
                     CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("{\"category\":\"pista\",\"quantity\":1} x")),
                     CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("{\"category\":\"pista\",\"quantity\":1}"
                                   "{\"category\":\"pista\",\"quantity\":1}")),
                     CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("{\"category\":\"pista\",\"quantity\":1}\0junk")),
                     CATRACA_E_INVALID);
    /* cJSON skips every byte below 0x21 as whitespace; JSON allows only four. */
    assert_int_equal(purchase(BODY("{\"category\":\"pista\",\"quantity\":1}\v")),
                     CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("{\"category\":\0\"pista\",\"quantity\":1}")),
                     CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("\xEF\xBB\xBF{\"category\":\"pista\",\"quantity\":1}")),
                     CATRACA_E_INVALID);
    /* A member name is a JSON string too: "category\u0000x" must not read as "category". */
    assert_int_equal(
        purchase(BODY("{\"category\\u0000x\":\"vip\",\"category\":\"pista\",\"quantity\":1}")),
        CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("[{\"category\":\"pista\",\"quantity\":1}]")),
                     CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("\"pista\"")), CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("")), CATRACA_E_INVALID);
    static struct engine_event_spec spec;
    assert_int_equal(
        event(BODY("{\"id\":\"evx\\u0000y\",\"categories\":[{\"id\":\"a\",\"capacity\":1}]}"),
              &spec),
        CATRACA_E_INVALID);
    assert_int_equal(
        event(BODY("{\"id\":\"evx\",\"categories\":[{\"id\":\"a\\u0000b\",\"capacity\":1}]}"),
              &spec),
        CATRACA_E_INVALID);
    uint8_t engine_state = 0;
    assert_int_equal(
        api_json_parse_state(BODY("{\"state\":\"open\\u0000x\"}"), &engine_state, message),
        CATRACA_E_INVALID);
    char reference[CATRACA_ID_MAX + 1];
    assert_int_equal(
        api_json_parse_confirm(BODY("{\"payment_ref\":\"psp\\u0000x\"}"), reference, message),
        CATRACA_E_INVALID);
}

/* An event body whose name is the given JSON string text (between the quotes). */
static int event_named(const char *name, struct engine_event_spec *spec)
{
    char body[1024];
    int n = snprintf(
        body, sizeof(body),
        "{\"id\":\"ev\",\"name\":\"%s\",\"categories\":[{\"id\":\"a\",\"capacity\":1}]}", name);
    assert_true(n > 0 && (size_t)n < sizeof(body));
    return event(body, (size_t)n, spec);
}

static int category_named(const char *name, struct engine_event_spec *spec)
{
    char body[1024];
    int n = snprintf(
        body, sizeof(body),
        "{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"name\":\"%s\",\"capacity\":1}]}", name);
    assert_true(n > 0 && (size_t)n < sizeof(body));
    return event(body, (size_t)n, spec);
}

/* Control characters (raw or escaped) and malformed UTF-8 are refused in every string. */
static void test_json_refuses_control_and_bad_utf8(void **state)
{
    (void)state;
    static struct engine_event_spec spec;
    static const char *const refused[] = {
        "a\\u0001z",
        "a\\u001Fz",
        "a\\u007fz",
        "a\\nz",
        "a\\tz",
        "a\\rz",
        "a\\bz",
        "a\\fz",
        "a\x01z",
        "a\x1fz",
        "a\x7fz",
        "a\tz",
        "a\xffz",             /* never in UTF-8 */
        "a\xc0\xafz",         /* overlong '/' */
        "a\xe0\x80\xafz",     /* overlong, three bytes */
        "a\xed\xa0\x80z",     /* a UTF-16 surrogate encoded in UTF-8 */
        "a\xf4\x90\x80\x80z", /* above U+10FFFF */
        "a\xe2\x82",          /* cut short */
        "a\x80z",             /* a lone continuation byte */
        "a\\ud800z",          /* a lone high surrogate */
        "a\\udc00z",          /* a lone low surrogate */
        "a\\ud800\\u0041",    /* a high surrogate and no low one */
        "a\\xz",              /* not a JSON escape */
        "a\\u00",             /* cut short */
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_int_equal(event_named(refused[i], &spec), CATRACA_E_INVALID);
        assert_int_equal(category_named(refused[i], &spec), CATRACA_E_INVALID);
    }
    /* Outside the rule: quotes, solidus, backslash, C1 controls, any plane. */
    assert_int_equal(event_named("Rock in Rio 2026 \xe2\x80\x94 day 1", &spec), 0);
    assert_string_equal(spec.name, "Rock in Rio 2026 \xe2\x80\x94 day 1");
    assert_int_equal(event_named("\\\"a\\\" \\/ \\\\ \\u00e9 \\u0080 \\ud83c\\udfb8", &spec), 0);
    assert_string_equal(spec.name, "\"a\" / \\ \xc3\xa9 \xc2\x80 \xf0\x9f\x8e\xb8");
    assert_int_equal(category_named("Pista \xc3\xa9", &spec), 0);
    assert_string_equal(spec.categories[0].name, "Pista \xc3\xa9");
    assert_int_equal(event_named("", &spec), 0);
}

static size_t base64url(const char *in, size_t length, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)length);
    size_t size = 0;
    for (int i = 0; i < n && out[i] != '='; i++)
        out[size++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[size] = '\0';
    return size;
}

/* A correctly signed token over any header and claims text (the issuer's own words). */
static int verify_signed(const char *header, size_t header_length, const char *claims,
                         size_t claims_length, struct jwt_claims *out)
{
    char token[2048];
    size_t n = base64url(header, header_length, token);
    token[n++] = '.';
    n += base64url(claims, claims_length, token + n);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length = 0;
    HMAC(EVP_sha256(), secret, (int)SECRET_LENGTH, (const unsigned char *)token, n, mac,
         &mac_length);
    token[n++] = '.';
    base64url((const char *)mac, mac_length, token + n);
    return jwt_verify(secret, SECRET_LENGTH, token, 1000, out);
}

#define HS256 BODY("{\"alg\":\"HS256\",\"typ\":\"JWT\"}")

/* A signed token is held to the same reading as a body: "alice\u0000x" is not alice. */
static void test_jwt_refuses_truncation(void **state)
{
    (void)state;
    struct jwt_claims claims;
    assert_int_equal(verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":2000}"), &claims), 0);
    assert_string_equal(claims.subject, "alice");
    assert_int_equal(claims.role, JWT_ROLE_BUYER);
    assert_int_equal(
        verify_signed(HS256, BODY("{\"sub\":\"alice\\u0000x\",\"exp\":2000}"), &claims),
        JWT_E_MALFORMED);
    assert_int_equal(verify_signed(HS256,
                                   BODY("{\"sub\":\"c1\",\"role\":\"admin\\u0000x\",\"exp\":2000}"),
                                   &claims),
                     JWT_E_MALFORMED);
    assert_int_equal(verify_signed(BODY("{\"alg\":\"HS256\\u0000x\"}"),
                                   BODY("{\"sub\":\"alice\",\"exp\":2000}"), &claims),
                     JWT_E_MALFORMED);
    assert_int_equal(verify_signed(BODY("{\"alg\":\"HS256\",\"typ\":\"JWT\\u0000x\"}"),
                                   BODY("{\"sub\":\"alice\",\"exp\":2000}"), &claims),
                     JWT_E_MALFORMED);
    assert_int_equal(verify_signed(BODY("{\"alg\":\"HS256\",\"kid\":\"k\\u001f\"}"),
                                   BODY("{\"sub\":\"alice\",\"exp\":2000}"), &claims),
                     JWT_E_MALFORMED);
    assert_int_equal(verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":2000} x"), &claims),
                     JWT_E_MALFORMED);
    assert_int_equal(verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":2000}\0"), &claims),
                     JWT_E_MALFORMED);
    assert_int_equal(
        verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":2000}{\"sub\":\"bob\"}"), &claims),
        JWT_E_MALFORMED);
    /* exp and nbf are stored as int64_t seconds: a double beyond that is no time of ours. */
    assert_int_equal(verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":1e300}"), &claims),
                     JWT_E_CLAIMS);
    assert_int_equal(
        verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":2000,\"nbf\":-1e300}"), &claims),
        JWT_E_CLAIMS);
    assert_int_equal(
        verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":9007199254740992}"), &claims), 0);
    assert_true(claims.expires_s == INT64_C(1) << 53);
    /* Any string of the claims, not only the ones read: one rule for all JSON from outside. */
    assert_int_equal(
        verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":2000,\"name\":\"a\\nb\"}"), &claims),
        JWT_E_MALFORMED);
    assert_int_equal(
        verify_signed(HS256, BODY("{\"sub\":\"alice\",\"exp\":2000,\"name\":\"\xff\"}"), &claims),
        JWT_E_MALFORMED);
}

/* A name of `count` copies of the UTF-8 text `unit`, as a JSON string's content. */
static const char *repeated(const char *unit, int count)
{
    static char text[512];
    text[0] = '\0';
    for (int i = 0; i < count; i++)
        strcat(text, unit);
    return text;
}

/* Names count characters (JSON Schema's maxLength), and the longest always fits the bytes. */
static void test_json_name_lengths(void **state)
{
    (void)state;
    static struct engine_event_spec spec;
    static const char *const units[] = {"a", "\xc3\xa9", "\xe2\x80\x94", "\xf0\x9f\x8e\xb8"};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t bytes = strlen(units[i]) * API_NAME_CHARACTERS_MAX;
        assert_int_equal(event_named(repeated(units[i], API_NAME_CHARACTERS_MAX), &spec), 0);
        assert_int_equal(strlen(spec.name), bytes);
        assert_int_equal(category_named(repeated(units[i], API_NAME_CHARACTERS_MAX), &spec), 0);
        assert_int_equal(strlen(spec.categories[0].name), bytes);
        assert_int_equal(event_named(repeated(units[i], API_NAME_CHARACTERS_MAX + 1), &spec),
                         CATRACA_E_INVALID);
        assert_int_equal(category_named(repeated(units[i], API_NAME_CHARACTERS_MAX + 1), &spec),
                         CATRACA_E_INVALID);
    }
    /* An escaped character is one character: \u00e9 and \ud83c\udfb8 count 1 each. */
    assert_int_equal(event_named(repeated("\\ud83c\\udfb8", API_NAME_CHARACTERS_MAX), &spec), 0);
    assert_int_equal(strlen(spec.name), 4 * API_NAME_CHARACTERS_MAX);
    assert_int_equal(event_named(repeated("\\u00e9", API_NAME_CHARACTERS_MAX + 1), &spec),
                     CATRACA_E_INVALID);
}

/* The other bounds of an event body, at and past their edges. */
static void test_json_event_bounds(void **state)
{
    (void)state;
    static struct engine_event_spec spec;
    assert_int_equal(event(BODY("{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":1,"
                                "\"price_cents\":1125899906842624}]}"),
                           &spec),
                     0);
    assert_true(spec.categories[0].price_cents == INT64_C(1) << 50);
    static const char *const refused[] = {
        "{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":1,"
        "\"price_cents\":1125899906842625}]}",
        "{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":1,\"price_cents\":-1}]}",
        "{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":1,\"price_cents\":1.5}]}",
        "{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":1,\"price_cents\":\"1\"}]}",
        "{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":1},{\"id\":\"a\",\"capacity\":2}"
        "]}",
        "{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":0}]}",
        "{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":10000001}]}",
        "{\"id\":\"ev\",\"categories\":[]}",
        "{\"id\":\"ev\",\"per_customer_limit\":11,\"categories\":[{\"id\":\"a\",\"capacity\":1}]}",
        "{\"id\":\"ev\",\"hold_seconds\":0,\"categories\":[{\"id\":\"a\",\"capacity\":1}]}",
        "{\"id\":\"ev\",\"state\":\"opened\",\"categories\":[{\"id\":\"a\",\"capacity\":1}]}",
        "{\"id\":\"e v\",\"categories\":[{\"id\":\"a\",\"capacity\":1}]}",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_int_equal(event(refused[i], strlen(refused[i]), &spec), CATRACA_E_INVALID);
    /* Member names match exactly: "NAME" is another, unknown, member (ignored). */
    assert_int_equal(
        event(BODY("{\"id\":\"ev\",\"NAME\":5,\"categories\":[{\"id\":\"a\",\"capacity\":1}]}"),
              &spec),
        0);
    assert_string_equal(spec.name, "");
}

/* A member given twice is refused: cJSON reads the first, other parsers the last. */
static void test_json_refuses_duplicate_members(void **state)
{
    (void)state;
    static struct engine_event_spec spec;
    assert_int_equal(purchase(BODY("{\"category\":\"vip\",\"category\":\"pista\",\"quantity\":1}")),
                     CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("{\"category\":\"pista\",\"quantity\":1,\"quantity\":9}")),
                     CATRACA_E_INVALID);
    assert_int_equal(purchase(BODY("{\"category\":\"pista\",\"quantity\":1,\"x\":1,\"x\":2}")), 0);
    assert_int_equal(
        event(BODY("{\"id\":\"a\",\"id\":\"b\",\"categories\":[{\"id\":\"a\",\"capacity\":1}]}"),
              &spec),
        CATRACA_E_INVALID);
    assert_int_equal(
        event(BODY("{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":1,\"capacity\":9}]}"),
              &spec),
        CATRACA_E_INVALID);
    assert_int_equal(event(BODY("{\"id\":\"ev\",\"categories\":[{\"id\":\"a\",\"capacity\":1}],"
                                "\"categories\":[{\"id\":\"b\",\"capacity\":1}]}"),
                           &spec),
                     CATRACA_E_INVALID);
    struct jwt_claims claims;
    assert_int_equal(
        verify_signed(HS256, BODY("{\"sub\":\"alice\",\"sub\":\"bob\",\"exp\":2000}"), &claims),
        JWT_E_CLAIMS);
    assert_int_equal(
        verify_signed(HS256,
                      BODY("{\"sub\":\"c1\",\"role\":\"buyer\",\"role\":\"admin\",\"exp\":2000}"),
                      &claims),
        JWT_E_CLAIMS);
    assert_int_equal(verify_signed(BODY("{\"alg\":\"HS256\",\"alg\":\"none\"}"),
                                   BODY("{\"sub\":\"alice\",\"exp\":2000}"), &claims),
                     JWT_E_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt),
        cmocka_unit_test(test_jwt_secret),
        cmocka_unit_test(test_ratelimit),
        cmocka_unit_test(test_challenge),
        cmocka_unit_test(test_waiters),
        cmocka_unit_test(test_purchase_ids),
        cmocka_unit_test(test_json_refuses_truncation),
        cmocka_unit_test(test_json_refuses_control_and_bad_utf8),
        cmocka_unit_test(test_jwt_refuses_truncation),
        cmocka_unit_test(test_json_name_lengths),
        cmocka_unit_test(test_json_event_bounds),
        cmocka_unit_test(test_json_refuses_duplicate_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
