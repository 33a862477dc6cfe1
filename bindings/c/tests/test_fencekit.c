/*
 * The C ABI's tests: behaviour through the header, as a C user sees it, including every kind
 * of bad input. Built with -Wall -Wextra -Werror and run plain, under AddressSanitizer +
 * UndefinedBehaviorSanitizer, and under valgrind (see the Makefile).
 *
 *   ./test_fencekit [NAME...]     run all tests, or those named; -NAME leaves NAME out
 *
 * FK_TEST_SLOW=N multiplies every wait (valgrind runs the node threads 20-50 times slower).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fencekit.h>

static int failures;
static const char *current;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed (last error: %s)\n", __FILE__,   \
                    __LINE__, current, #cond, fk_last_error_message());                   \
            failures++;                                                                    \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/* `call` must return `expected`; a failure message must name what went wrong. */
#define EXPECT(call, expected)                                                             \
    do {                                                                                   \
        fk_status got_ = (call);                                                           \
        if (got_ != (expected)) {                                                          \
            fprintf(stderr, "%s:%d: %s: %s returned %s, expected %s (%s)\n", __FILE__,    \
                    __LINE__, current, #call, fk_status_name(got_), #expected,             \
                    fk_last_error_message());                                              \
            failures++;                                                                    \
            return;                                                                        \
        }                                                                                  \
        if (got_ != FK_STATUS_OK && fk_last_error_message()[0] == '\0') {                  \
            fprintf(stderr, "%s:%d: %s: %s failed without a message\n", __FILE__,         \
                    __LINE__, current, #call);                                             \
            failures++;                                                                    \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#define OK(call) EXPECT(call, FK_STATUS_OK)

static long slow(void) {
    const char *s = getenv("FK_TEST_SLOW");
    return s ? atol(s) : 1;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- temporary directories ------------------------------------------------------------ */

static char dirs[16][64];
static int ndirs;

static const char *temp_dir(void) {
    char *d = dirs[ndirs++];
    strcpy(d, "/tmp/fencekit-ctest-XXXXXX");
    if (mkdtemp(d) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    return d;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_temp_dirs(void) {
    for (int i = 0; i < ndirs; i++) nftw(dirs[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    ndirs = 0;
}

static fk_fence *open_fence(const char *dir) {
    fk_fence *fence = NULL;
    if (fk_fence_open(dir, strlen(dir), NULL, &fence) != FK_STATUS_OK) {
        fprintf(stderr, "fk_fence_open %s: %s\n", dir, fk_last_error_message());
        exit(2);
    }
    return fence;
}

static fk_token tok(uint64_t generation, uint64_t holder) {
    fk_token t = {.generation = generation, .holder = holder};
    return t;
}

/* ---- fence ---------------------------------------------------------------------------- */

static void test_version(void) {
    CHECK(fk_abi_version() == FK_ABI_VERSION);
    CHECK(strlen(fk_version()) >= 5);
    CHECK(strcmp(fk_status_name(FK_STATUS_POISONED), "FK_STATUS_POISONED") == 0);
    CHECK(strcmp(fk_status_name(12345), "FK_STATUS_UNKNOWN") == 0);
}

/* I5: stale rejected, same generation from another holder is a conflict, advances survive. */
static void test_fence_verdicts_and_reopen(void) {
    const char *dir = temp_dir();
    fk_fence *fence = open_fence(dir);
    uint32_t a, b, again;
    OK(fk_fence_register(fence, (const uint8_t *)"a", 1, &a));
    OK(fk_fence_register(fence, (const uint8_t *)"b", 1, &b));
    OK(fk_fence_register(fence, (const uint8_t *)"a", 1, &again));
    CHECK(a != b && again == a);

    fk_verdict v;
    fk_token none = {0, 0};
    OK(fk_fence_mark(fence, a, &v.current));
    CHECK(memcmp(&v.current, &none, sizeof none) == 0);

    OK(fk_fence_check(fence, a, tok(4, 1), &v));
    CHECK(v.kind == FK_VERDICT_ADVANCED && v.previous.generation == 0 && fk_verdict_is_accepted(&v));
    OK(fk_fence_check(fence, a, tok(4, 1), &v));
    CHECK(v.kind == FK_VERDICT_ACCEPTED && v.current.generation == 4 && fk_verdict_is_accepted(&v));
    OK(fk_fence_check(fence, a, tok(4, 2), &v));
    CHECK(v.kind == FK_VERDICT_CONFLICT && v.current.holder == 1 && !fk_verdict_is_accepted(&v));
    OK(fk_fence_check(fence, a, tok(6, 2), &v));
    CHECK(v.kind == FK_VERDICT_ADVANCED && v.previous.generation == 4 && v.previous.holder == 1);
    OK(fk_fence_check(fence, a, tok(5, 3), &v));
    CHECK(v.kind == FK_VERDICT_STALE && v.current.generation == 6 && v.current.holder == 2);
    CHECK(!fk_verdict_is_accepted(&v));
    OK(fk_fence_check_key(fence, (const uint8_t *)"c", 1, tok(1, 1), &v));
    CHECK(v.kind == FK_VERDICT_ADVANCED);

    fk_counters c;
    OK(fk_fence_counters(fence, a, &c));
    CHECK(c.accepted == 1 && c.advanced == 2 && c.stale == 1 && c.conflicts == 1);
    /* A host that reads no accepted count turns counting off: verdicts and other counts stay. */
    OK(fk_fence_set_count_accepted(fence, false));
    OK(fk_fence_check(fence, a, tok(6, 2), &v));
    CHECK(v.kind == FK_VERDICT_ACCEPTED);
    OK(fk_fence_check(fence, a, tok(5, 3), &v));
    CHECK(v.kind == FK_VERDICT_STALE);
    OK(fk_fence_counters(fence, a, &c));
    CHECK(c.accepted == 1 && c.stale == 2);
    OK(fk_fence_set_count_accepted(fence, true));
    OK(fk_fence_check(fence, a, tok(6, 2), &v));
    OK(fk_fence_counters(fence, a, &c));
    CHECK(c.accepted == 2);
    size_t len;
    OK(fk_fence_len(fence, &len));
    CHECK(len == 3);
    OK(fk_fence_compact(fence));
    fk_fence_free(fence);

    fence = open_fence(dir);
    uint32_t found;
    OK(fk_fence_lookup(fence, (const uint8_t *)"a", 1, &found));
    OK(fk_fence_check(fence, found, tok(5, 3), &v));
    CHECK(v.kind == FK_VERDICT_STALE && v.current.generation == 6);
    OK(fk_fence_check_key(fence, (const uint8_t *)"c", 1, tok(1, 1), &v));
    CHECK(v.kind == FK_VERDICT_ACCEPTED);
    fk_fence_free(fence);
}

static void test_fence_batch(void) {
    fk_fence *fence = open_fence(temp_dir());
    enum { N = 256 };
    fk_check_item items[N];
    fk_verdict verdicts[N];
    for (int i = 0; i < N; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "r%d", i % 16);
        uint32_t id;
        OK(fk_fence_register(fence, (const uint8_t *)key, (size_t)n, &id));
        items[i] = (fk_check_item){.resource = id, .token = tok(2, 7)};
    }
    items[N - 1].token = tok(1, 7); /* older than the mark the batch itself sets */
    OK(fk_fence_check_batch(fence, items, verdicts, N));
    for (int i = 0; i < N - 1; i++) {
        CHECK(verdicts[i].kind == (i < 16 ? FK_VERDICT_ADVANCED : FK_VERDICT_ACCEPTED));
    }
    CHECK(verdicts[N - 1].kind == FK_VERDICT_STALE);

    /* A bad item: nothing is checked, and no verdict says "accepted". An id the fence never
     * gave out is a bad item like a bad token: FK_STATUS_INVALID_BATCH, naming the item. */
    items[3].resource = 9999;
    for (int i = 0; i < N; i++) verdicts[i].kind = FK_VERDICT_ACCEPTED;
    EXPECT(fk_fence_check_batch(fence, items, verdicts, N), FK_STATUS_INVALID_BATCH);
    CHECK(strstr(fk_last_error_message(), "item 3: ") != NULL);
    CHECK(strstr(fk_last_error_message(), "unknown resource id 9999") != NULL);
    for (int i = 0; i < N; i++) CHECK(verdicts[i].kind == FK_VERDICT_NONE);
    items[3].resource = items[4].resource;
    items[5].token = tok(0, 1);
    EXPECT(fk_fence_check_batch(fence, items, verdicts, N), FK_STATUS_INVALID_BATCH);
    CHECK(strstr(fk_last_error_message(), "item 5") != NULL);

    OK(fk_fence_check_batch(fence, NULL, NULL, 0));
    /* (A failed call writes FK_VERDICT_NONE to all `len` verdicts: this array has room for N,
     * so too long a batch is shown with no array; test_fence_batch_failure_... has one.) */
    EXPECT(fk_fence_check_batch(fence, items, NULL, FK_BATCH_MAX + 1), FK_STATUS_INVALID_BATCH);
    EXPECT(fk_fence_check_batch(fence, NULL, verdicts, 3), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_check_batch(fence, items, NULL, 3), FK_STATUS_NULL_ARGUMENT);
    fk_fence_free(fence);
}

/* Fills `verdicts[0..n]` with what a successful call leaves: every item accepted. */
static int accept_all(fk_fence *fence, const fk_check_item *items, fk_verdict *verdicts, size_t n) {
    for (size_t at = 0; at < n; at += FK_BATCH_MAX) {
        size_t len = n - at < FK_BATCH_MAX ? n - at : FK_BATCH_MAX;
        if (fk_fence_check_batch(fence, items, verdicts + at, len) != FK_STATUS_OK) return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!fk_verdict_is_accepted(&verdicts[i])) return 0;
    }
    return 1;
}

/* True when no verdict of `verdicts[0..n]` reads as acceptance: every one is FK_VERDICT_NONE. */
static int all_none(const fk_verdict *verdicts, size_t n) {
    static const fk_verdict none;
    for (size_t i = 0; i < n; i++) {
        if (fk_verdict_is_accepted(&verdicts[i]) || memcmp(&verdicts[i], &none, sizeof none) != 0) return 0;
    }
    return 1;
}

/* I7: a verdict array reused from a call that accepted reads FK_VERDICT_NONE in every slot
 * after a batch call that fails, whatever the failure: a caller who reads the array without
 * the status (or before checking it) never finds an acceptance. */
static void test_fence_batch_failure_rejects_a_reused_array(void) {
    fk_fence *fence = open_fence(temp_dir());
    enum { N = FK_BATCH_MAX + 1 };
    static fk_check_item items[N];
    static fk_verdict verdicts[N];
    uint32_t id;
    OK(fk_fence_register(fence, (const uint8_t *)"jobs", 4, &id));
    for (int i = 0; i < N; i++) items[i] = (fk_check_item){.resource = id, .token = tok(3, 1)};

    /* Too many items: every one of the N slots, the one past FK_BATCH_MAX too. */
    CHECK(accept_all(fence, items, verdicts, N));
    EXPECT(fk_fence_check_batch(fence, items, verdicts, N), FK_STATUS_INVALID_BATCH);
    CHECK(all_none(verdicts, N));

    /* A NULL fence: the slots it was given, and no others. */
    CHECK(accept_all(fence, items, verdicts, 8));
    EXPECT(fk_fence_check_batch(NULL, items, verdicts, 5), FK_STATUS_NULL_ARGUMENT);
    CHECK(all_none(verdicts, 5) && fk_verdict_is_accepted(&verdicts[5]));

    /* NULL items. */
    CHECK(accept_all(fence, items, verdicts, 8));
    EXPECT(fk_fence_check_batch(fence, NULL, verdicts, 5), FK_STATUS_NULL_ARGUMENT);
    CHECK(all_none(verdicts, 5));

    /* A bad token, and an unknown resource, in the last item: nothing is checked. */
    CHECK(accept_all(fence, items, verdicts, 8));
    items[7].token = tok(0, 1);
    EXPECT(fk_fence_check_batch(fence, items, verdicts, 8), FK_STATUS_INVALID_BATCH);
    CHECK(all_none(verdicts, 8));
    items[7] = items[0];
    CHECK(accept_all(fence, items, verdicts, 8));
    items[7].resource = 4242;
    EXPECT(fk_fence_check_batch(fence, items, verdicts, 8), FK_STATUS_INVALID_BATCH);
    CHECK(strstr(fk_last_error_message(), "item 7: ") != NULL);
    CHECK(all_none(verdicts, 8));
    items[7] = items[0];

    /* A length no array can have (a negative count cast to size_t) is refused without a
     * write: writing it would crash. */
    CHECK(accept_all(fence, items, verdicts, 8));
    EXPECT(fk_fence_check_batch(fence, items, verdicts, (size_t)-1), FK_STATUS_INVALID_BATCH);
    CHECK(fk_verdict_is_accepted(&verdicts[0]));
    /* NULL verdicts: nothing to write, nothing crashes. */
    EXPECT(fk_fence_check_batch(fence, items, NULL, 8), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_check_batch(NULL, items, NULL, 8), FK_STATUS_NULL_ARGUMENT);

    /* And the mark is what the successful calls made it. */
    fk_token mark;
    OK(fk_fence_mark(fence, id, &mark));
    CHECK(mark.generation == 3 && mark.holder == 1);
    fk_fence_free(fence);
}

/* A holder is a node id, 1 to 2^64 - 1: holders from 2^63 up are tokens like any other (only
 * the generation stops at 2^63 - 1), across a reopen and in a batch; holder 0 is refused. */
static void test_fence_holders_up_to_2_64(void) {
    const char *dir = temp_dir();
    fk_fence *fence = open_fence(dir);
    const uint64_t high = UINT64_C(1) << 63, top = UINT64_MAX, generation_max = (UINT64_C(1) << 63) - 1;
    uint32_t id;
    fk_verdict v;
    OK(fk_fence_register(fence, (const uint8_t *)"r", 1, &id));
    OK(fk_fence_check(fence, id, tok(1, high), &v));
    CHECK(v.kind == FK_VERDICT_ADVANCED && v.current.holder == high);
    OK(fk_fence_check(fence, id, tok(1, high), &v));
    CHECK(v.kind == FK_VERDICT_ACCEPTED);
    OK(fk_fence_check(fence, id, tok(1, top), &v));
    CHECK(v.kind == FK_VERDICT_CONFLICT && v.current.holder == high);
    OK(fk_fence_check(fence, id, tok(generation_max, top), &v));
    CHECK(v.kind == FK_VERDICT_ADVANCED && v.previous.holder == high && v.current.holder == top);
    fk_fence_free(fence);
    fence = open_fence(dir);
    OK(fk_fence_lookup(fence, (const uint8_t *)"r", 1, &id));
    fk_token mark;
    OK(fk_fence_mark(fence, id, &mark));
    CHECK(mark.generation == generation_max && mark.holder == top);
    fk_check_item items[2] = {{.resource = id, .token = tok(generation_max, top)},
                              {.resource = id, .token = tok(generation_max, high)}};
    fk_verdict verdicts[2];
    OK(fk_fence_check_batch(fence, items, verdicts, 2));
    CHECK(verdicts[0].kind == FK_VERDICT_ACCEPTED && verdicts[1].kind == FK_VERDICT_CONFLICT);
    EXPECT(fk_fence_check(fence, id, tok(1, 0), &v), FK_STATUS_INVALID_TOKEN);
    CHECK(strstr(fk_last_error_message(), "node id 0") != NULL);
    fk_fence_free(fence);
}

static void test_fence_bad_input(void) {
    const char *dir = temp_dir();
    fk_fence *fence = open_fence(dir);
    fk_verdict v = {0};
    uint32_t id;
    char long_key[FK_KEY_LEN_MAX + 2];
    memset(long_key, 'k', sizeof long_key);

    EXPECT(fk_fence_check(NULL, 0, tok(1, 1), &v), FK_STATUS_NULL_ARGUMENT);
    CHECK(strstr(fk_last_error_message(), "fence") != NULL);
    EXPECT(fk_fence_register(fence, (const uint8_t *)"k", 1, NULL), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_register(fence, NULL, 3, &id), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_register(fence, (const uint8_t *)"", 0, &id), FK_STATUS_INVALID_KEY);
    EXPECT(fk_fence_register(fence, NULL, 0, &id), FK_STATUS_INVALID_KEY);
    EXPECT(fk_fence_register(fence, (const uint8_t *)long_key, FK_KEY_LEN_MAX + 1, &id), FK_STATUS_INVALID_KEY);
    OK(fk_fence_register(fence, (const uint8_t *)long_key, FK_KEY_LEN_MAX, &id));
    EXPECT(fk_fence_check(fence, id, tok(1, 1), NULL), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_check(fence, 77, tok(1, 1), &v), FK_STATUS_UNKNOWN_RESOURCE);
    EXPECT(fk_fence_check(fence, id, tok(0, 1), &v), FK_STATUS_INVALID_TOKEN);
    EXPECT(fk_fence_check(fence, id, tok(1, 0), &v), FK_STATUS_INVALID_TOKEN);
    EXPECT(fk_fence_check(fence, id, tok(UINT64_MAX, 1), &v), FK_STATUS_INVALID_TOKEN);
    CHECK(v.kind == FK_VERDICT_NONE); /* outputs are written only on success */
    EXPECT(fk_fence_check_key(fence, (const uint8_t *)long_key, sizeof long_key, tok(1, 1), &v),
           FK_STATUS_INVALID_KEY);
    EXPECT(fk_fence_lookup(fence, (const uint8_t *)"nope", 4, &id), FK_STATUS_UNKNOWN_RESOURCE);
    /* A key no fence can hold is a bad key, for a lookup too, not an unregistered one. */
    EXPECT(fk_fence_lookup(fence, (const uint8_t *)"", 0, &id), FK_STATUS_INVALID_KEY);
    CHECK(strstr(fk_last_error_message(), "empty") != NULL);
    EXPECT(fk_fence_lookup(fence, NULL, 0, &id), FK_STATUS_INVALID_KEY);
    EXPECT(fk_fence_lookup(fence, (const uint8_t *)long_key, FK_KEY_LEN_MAX + 1, &id), FK_STATUS_INVALID_KEY);
    CHECK(strstr(fk_last_error_message(), "257 bytes") != NULL);
    EXPECT(fk_fence_lookup(fence, NULL, 3, &id), FK_STATUS_NULL_ARGUMENT);
    OK(fk_fence_lookup(fence, (const uint8_t *)long_key, FK_KEY_LEN_MAX, &id));
    EXPECT(fk_fence_counters(fence, 77, NULL), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_set_count_accepted(NULL, false), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_mark(fence, 77, &v.current), FK_STATUS_UNKNOWN_RESOURCE);
    EXPECT(fk_fence_len(fence, NULL), FK_STATUS_NULL_ARGUMENT);
    CHECK(!fk_verdict_is_accepted(NULL));

    /* The directory is locked while the fence is open, in this process as in any other. */
    fk_fence *second = NULL;
    EXPECT(fk_fence_open(dir, strlen(dir), NULL, &second), FK_STATUS_LOCKED);
    CHECK(second == NULL);
    fk_fence_free(fence);

    const char bad_utf8[] = "/tmp/\xff\xfe";
    EXPECT(fk_fence_open(bad_utf8, sizeof bad_utf8 - 1, NULL, &second), FK_STATUS_INVALID_UTF8);
    EXPECT(fk_fence_open(NULL, 4, NULL, &second), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_open("", 0, NULL, &second), FK_STATUS_INVALID_ARGUMENT);
    EXPECT(fk_fence_open(dir, strlen(dir), NULL, NULL), FK_STATUS_NULL_ARGUMENT);
    fk_fence_options options;
    OK(fk_fence_options_default(&options));
    options.max_resources = 0;
    EXPECT(fk_fence_open(dir, strlen(dir), &options, &second), FK_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(fk_last_error_message(), "max_resources") != NULL);
    OK(fk_fence_options_default(&options));
    options.segment_size = 1000;
    EXPECT(fk_fence_open(dir, strlen(dir), &options, &second), FK_STATUS_INVALID_ARGUMENT);
    options.segment_size = 1 << 16;
    OK(fk_fence_open(dir, strlen(dir), &options, &second));
    fk_fence_free(second);
    EXPECT(fk_fence_options_default(NULL), FK_STATUS_NULL_ARGUMENT);

    fk_fence_free(NULL);
    fk_buf_release(NULL);
    fk_buf empty = {0};
    fk_buf_release(&empty);
    fk_log_free(NULL);
    fk_node_free(NULL);
}

/* ---- log inspection ------------------------------------------------------------------- */

static void test_log_inspection(void) {
    const char *dir = temp_dir();
    fk_fence *fence = open_fence(dir);
    fk_verdict v;
    OK(fk_fence_check_key(fence, (const uint8_t *)"x", 1, tok(3, 1), &v));
    OK(fk_fence_check_key(fence, (const uint8_t *)"x", 1, tok(8, 2), &v));

    /* A fence that is open (its directory locked) can be inspected. */
    fk_log *log = NULL;
    OK(fk_log_inspect(dir, strlen(dir), &log));
    fk_log_summary summary;
    OK(fk_log_get_summary(log, &summary));
    CHECK(summary.records == 2 && summary.segments == 1 && summary.torn_tail == 0);
    fk_log_record record;
    OK(fk_log_get_record(log, 1, &record));
    CHECK(record.generation == 8 && strcmp(fk_log_kind_name(record.kind), "fence-mark") == 0);
    /* A fence mark's payload is the holder (8 bytes, little-endian) and the key. */
    CHECK(record.payload != NULL && record.payload_len == 9 && record.payload[0] == 2 && record.payload[8] == 'x');
    fk_log_record first;
    OK(fk_log_get_record(log, 0, &first));
    CHECK(first.generation == 3 && first.segment == record.segment && first.offset < record.offset);
    EXPECT(fk_log_get_record(log, 2, &record), FK_STATUS_INVALID_ARGUMENT);
    EXPECT(fk_log_get_record(NULL, 0, &record), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_log_get_summary(log, NULL), FK_STATUS_NULL_ARGUMENT);
    CHECK(strcmp(fk_log_kind_name(0), "unknown") == 0 && strcmp(fk_log_kind_name(0x11), "raft-entries") == 0);
    fk_log_free(log);
    fk_fence_free(fence);

    /* Damage in the middle of the log: refused, with the file and offset. */
    char segment[128];
    snprintf(segment, sizeof segment, "%s/%016llx.wal", dir, (unsigned long long)first.segment);
    int fd = open(segment, O_WRONLY);
    CHECK(fd >= 0);
    /* Change the first record's key byte (after its 32-byte header and 8-byte holder); the
     * second record witnesses that it had been synced. */
    char flipped = 'y';
    CHECK(pwrite(fd, &flipped, 1, (off_t)first.offset + 32 + 8) == 1);
    close(fd);
    log = NULL;
    EXPECT(fk_log_inspect(dir, strlen(dir), &log), FK_STATUS_CORRUPT);
    CHECK(log == NULL && strstr(fk_last_error_message(), "offset") != NULL);

    const char *empty = temp_dir();
    EXPECT(fk_log_inspect(empty, strlen(empty), &log), FK_STATUS_CORRUPT);
    EXPECT(fk_log_inspect("/nonexistent/fk", 15, &log), FK_STATUS_IO);
    EXPECT(fk_log_inspect(dir, strlen(dir), NULL), FK_STATUS_NULL_ARGUMENT);
}

/* ---- node ----------------------------------------------------------------------------- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("free port");
        exit(2);
    }
    close(fd);
    return ntohs(addr.sin_port);
}

/* Waits up to 5 s (times FK_TEST_SLOW) for `node` to lead; the last answer of
 * fk_node_leadership. */
static fk_status wait_for_leadership(fk_node *node, fk_leadership *out) {
    fk_status s = FK_STATUS_NOT_LEADER;
    for (int i = 0; i < 500 * slow() && s != FK_STATUS_OK; i++) {
        s = fk_node_leadership(node, out);
        if (s != FK_STATUS_OK) sleep_ms(10);
    }
    return s;
}

/* Development certificates for nodes 1..n of `cluster`, in a new temporary directory. */
static const char *certs_for(uint64_t cluster, int n) {
    const char *dir = temp_dir();
    uint64_t ids[8];
    for (int i = 0; i < n; i++) ids[i] = (uint64_t)i + 1;
    if (fk_dev_certs_init(dir, strlen(dir), cluster, ids, (size_t)n) != FK_STATUS_OK) {
        fprintf(stderr, "fk_dev_certs_init: %s\n", fk_last_error_message());
        exit(2);
    }
    return dir;
}

/* The JSON of a single-node group whose only member is node 1, with the certificates of
 * `certs` (from certs_for). */
static int single_config(char *out, size_t cap, const char *dir, int port, int cluster, const char *certs) {
    return snprintf(out, cap,
                    "{\"id\": 1, \"cluster\": %d, \"data_dir\": \"%s\", \"listen\": \"127.0.0.1:%d\","
                    " \"tls\": {\"dir\": \"%s/node-1\"},"
                    " \"timing\": {\"tick_ms\": %ld, \"margin_ms\": %ld}}",
                    cluster, dir, port, certs, 10 * slow(), 10 * slow());
}

static void test_node_single(void) {
    const char *dir = temp_dir();
    const char *certs = certs_for(7, 1);
    char config[512];
    int port = free_port();
    int len = single_config(config, sizeof config, dir, port, 7, certs);
    fk_node *node = NULL;
    OK(fk_node_start(config, (size_t)len, &node));

    fk_event event = {0};
    int elected = 0;
    for (int i = 0; i < 100 && !elected; i++) {
        fk_status s = fk_node_next_event(node, (uint32_t)(100 * slow()), &event);
        CHECK(s == FK_STATUS_OK || s == FK_STATUS_TIMEOUT);
        elected = s == FK_STATUS_OK && event.kind == FK_EVENT_ELECTED;
    }
    CHECK(elected && event.token.holder == 1 && event.token.generation >= 1);

    fk_leadership leadership;
    OK(fk_node_leadership(node, &leadership));
    uint64_t now;
    OK(fk_node_now_ns(node, &now));
    CHECK(leadership.token.holder == 1 && leadership.lease_deadline_ns > 0);
    CHECK(leadership.lease_remaining_ns > 0 && leadership.lease_remaining_ns < 1000000000ull * (uint64_t)slow());
    /* Deadlines are on CLOCK_BOOTTIME: the host's own reading brackets the library's. */
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    uint64_t ours = fk_now_ns();
    clock_gettime(CLOCK_BOOTTIME, &ts);
    uint64_t after = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    CHECK(before <= ours && ours <= after);
    CHECK(now <= ours && leadership.lease_deadline_ns > before - 1000000000ull * (uint64_t)slow());
    CHECK(leadership.lease_deadline_ns < after + 1000000000ull * (uint64_t)slow());

    uint64_t index = 0;
    OK(fk_node_propose(node, (const uint8_t *)"hello", 5, (uint32_t)(5000 * slow()), &index));
    CHECK(index >= 2);
    fk_applied applied = {0};
    int found = 0;
    while (!found && fk_node_next_applied(node, (uint32_t)(2000 * slow()), &applied) == FK_STATUS_OK) {
        found = applied.kind == FK_APPLIED_ENTRY && applied.index == index && applied.data.len == 5 &&
                memcmp(applied.data.data, "hello", 5) == 0 && applied.data.data[5] == '\0';
        fk_buf_release(&applied.data);
        CHECK(applied.data.data == NULL);
    }
    CHECK(found);

    fk_buf status = {0};
    OK(fk_node_status_json(node, &status));
    CHECK(strstr((const char *)status.data, "\"role\":\"leader\",\"leader\":1,") != NULL);
    CHECK(strstr((const char *)status.data, "\"stopped\":false") != NULL);
    CHECK(strlen((const char *)status.data) == status.len);
    fk_buf_release(&status);
    fk_buf_release(&status);

    uint64_t successor;
    EXPECT(fk_node_step_down(node, &successor), FK_STATUS_MEMBERSHIP); /* nobody to hand over to */
    EXPECT(fk_node_transfer(node, 0), FK_STATUS_INVALID_TOKEN);
    /* A target that is no voter (or this node) is the membership's refusal, naming the node:
     * the caller can pick another from the status' voters. */
    EXPECT(fk_node_transfer(node, 2), FK_STATUS_MEMBERSHIP);
    CHECK(strstr(fk_last_error_message(), "node 2 is not a voter") != NULL);
    EXPECT(fk_node_transfer(node, UINT64_MAX), FK_STATUS_MEMBERSHIP);
    EXPECT(fk_node_transfer(node, 1), FK_STATUS_MEMBERSHIP);
    CHECK(strstr(fk_last_error_message(), "itself") != NULL);
    OK(fk_node_leadership(node, &leadership)); /* a refused transfer revokes nothing */
    EXPECT(fk_node_propose(node, NULL, 5, 10, &index), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_node_propose(node, (const uint8_t *)"x", 1, 10, NULL), FK_STATUS_NULL_ARGUMENT);
    /* An empty proposal would commit as a no-op and never be applied: refused. */
    EXPECT(fk_node_propose(node, NULL, 0, 10, &index), FK_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(fk_last_error_message(), "empty proposal") != NULL);
    EXPECT(fk_node_leadership(node, NULL), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_node_leadership(NULL, &leadership), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_node_next_event(node, 0, NULL), FK_STATUS_NULL_ARGUMENT);

    /* The same port again: a transport error that names the address. */
    const char *dir2 = temp_dir();
    char config2[512];
    int len2 = single_config(config2, sizeof config2, dir2, port, 7, certs);
    fk_node *clash = NULL;
    EXPECT(fk_node_start(config2, (size_t)len2, &clash), FK_STATUS_TRANSPORT);
    CHECK(clash == NULL && strstr(fk_last_error_message(), "127.0.0.1") != NULL);
    /* The same data directory while the node runs: locked. */
    len2 = single_config(config2, sizeof config2, dir, free_port(), 7, certs);
    EXPECT(fk_node_start(config2, (size_t)len2, &clash), FK_STATUS_LOCKED);

    OK(fk_node_stop(node));
    /* A stopped node's status claims no leadership: no role of leader, no leader, no lease. */
    OK(fk_node_status_json(node, &status));
    CHECK(strstr((const char *)status.data, "\"role\":\"follower\",\"leader\":null,\"leading_generation\":null") != NULL);
    CHECK(strstr((const char *)status.data, "\"lease_remaining_ms\":null") != NULL);
    CHECK(strstr((const char *)status.data, "\"stopped\":true") != NULL);
    CHECK(strstr((const char *)status.data, "\"failed\":false") != NULL);
    fk_buf_release(&status);
    EXPECT(fk_node_stop(node), FK_STATUS_STOPPED);
    EXPECT(fk_node_transfer(node, 2), FK_STATUS_STOPPED);
    EXPECT(fk_node_leadership(node, &leadership), FK_STATUS_NOT_LEADER);
    EXPECT(fk_node_propose(node, (const uint8_t *)"x", 1, 10, &index), FK_STATUS_STOPPED);
    fk_status s;
    while ((s = fk_node_next_event(node, 0, &event)) == FK_STATUS_OK) {
    }
    CHECK(s == FK_STATUS_STOPPED || s == FK_STATUS_TIMEOUT);
    fk_node_free(node);

    /* Its directory belongs to cluster 7: another cluster is refused. */
    len2 = single_config(config2, sizeof config2, dir, free_port(), 8, certs);
    EXPECT(fk_node_start(config2, (size_t)len2, &clash), FK_STATUS_WRONG_CLUSTER);

    /* The node's log can be inspected after the fact. */
    fk_log *log = NULL;
    OK(fk_log_inspect(dir, strlen(dir), &log));
    fk_log_summary summary;
    OK(fk_log_get_summary(log, &summary));
    CHECK(summary.records >= 3);
    fk_log_free(log);
}

static void test_node_bad_config(void) {
    const char *cases[][2] = {
        {"{", "does not parse"},
        {"{\"id\": 1}", "cluster"},
        {"{\"id\": 0, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\"}", "id = 0"},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"nowhere\"}", "listen"},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\", \"colour\": 1}",
         "colour"},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\","
         " \"insecure\": true, \"timing\": {\"election_tick\": 1}}",
         "election_tick"},
        /* Secure by default: neither TLS nor an explicit "insecure". */
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\"}", "no \"tls\""},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\","
         " \"insecure\": true, \"tls\": {\"dir\": \"/tmp\"}}",
         "not both"},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\","
         " \"tls\": {\"cert\": \"/a\"}}",
         "tls: give"},
        /* A negative number (or any value of the wrong type) is refused naming its field. */
        {"{\"id\": 1, \"cluster\": -7, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\"}", "cluster: "},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\","
         " \"insecure\": true, \"timing\": {\"tick_ms\": -1}}",
         "timing.tick_ms: "},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\","
         " \"insecure\": true, \"timing\": {\"max_drift\": -0.5}}",
         "timing.max_drift"},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\","
         " \"insecure\": true, \"timing\": {\"margin_ms\": 0}}",
         "timing.margin_ms"},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\","
         " \"insecure\": true, \"peers\": [{\"id\": 2, \"addr\": \"a:1\"}, {\"id\": -3, \"addr\": \"b:1\"}]}",
         "peers[1].id: "},
        {"{\"id\": 1, \"cluster\": 1, \"data_dir\": \"/tmp/x\", \"listen\": \"127.0.0.1:0\","
         " \"insecure\": true, \"segment_size\": 1000}",
         "segment_size = 1000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fk_node *node = NULL;
        EXPECT(fk_node_start(cases[i][0], strlen(cases[i][0]), &node), FK_STATUS_INVALID_CONFIG);
        CHECK(node == NULL);
        if (strstr(fk_last_error_message(), cases[i][1]) == NULL) {
            fprintf(stderr, "%s: config %zu: message does not mention %s: %s\n", current, i, cases[i][1],
                    fk_last_error_message());
            failures++;
        }
    }
    fk_node *node = NULL;
    const char bad_utf8[] = "{\"id\": \xff}";
    EXPECT(fk_node_start(bad_utf8, sizeof bad_utf8 - 1, &node), FK_STATUS_INVALID_UTF8);
    EXPECT(fk_node_start(NULL, 10, &node), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_node_start("", 0, &node), FK_STATUS_INVALID_CONFIG);
    EXPECT(fk_node_start("{}", 2, NULL), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_node_stop(NULL), FK_STATUS_NULL_ARGUMENT);
}

/* Three nodes: transfer moves leadership to a higher generation; the old token is stale. */
static void test_node_transfer_fences_the_old_leader(void) {
    enum { N = 3 };
    const char *certs = certs_for(9, N);
    int ports[N];
    fk_node *nodes[N] = {0};
    for (int i = 0; i < N; i++) ports[i] = free_port();
    for (int i = 0; i < N; i++) {
        char config[1024];
        int len = snprintf(config, sizeof config,
                           "{\"id\": %d, \"cluster\": 9, \"data_dir\": \"%s\", \"listen\": \"127.0.0.1:%d\","
                           " \"peers\": [{\"id\": %d, \"addr\": \"127.0.0.1:%d\"}, {\"id\": %d, \"addr\": \"127.0.0.1:%d\"}],"
                           " \"tls\": {\"dir\": \"%s/node-%d\"},"
                           " \"timing\": {\"tick_ms\": %ld, \"margin_ms\": %ld}}",
                           i + 1, temp_dir(), ports[i], (i + 1) % N + 1, ports[(i + 1) % N], (i + 2) % N + 1,
                           ports[(i + 2) % N], certs, i + 1, 10 * slow(), 10 * slow());
        OK(fk_node_start(config, (size_t)len, &nodes[i]));
    }
    fk_leadership first = {0}, second = {0};
    int leader = -1;
    for (int round = 0; round < 1000 * slow() && leader < 0; round++) {
        for (int i = 0; i < N && leader < 0; i++) {
            if (fk_node_leadership(nodes[i], &first) == FK_STATUS_OK) leader = i;
        }
        if (leader < 0) sleep_ms(10);
    }
    CHECK(leader >= 0);
    int target = (leader + 1) % N;
    fk_status transferred = FK_STATUS_TIMEOUT;
    int next = -1;
    /* A transfer needs the target caught up; retry until it leads. */
    for (int round = 0; round < 1000 * slow() && next != target; round++) {
        if (round % 50 == 0) transferred = fk_node_transfer(nodes[leader], (uint64_t)target + 1);
        if (fk_node_leadership(nodes[target], &second) == FK_STATUS_OK) next = target;
        else sleep_ms(10);
    }
    CHECK(transferred == FK_STATUS_OK || next == target);
    CHECK(next == target && second.token.generation > first.token.generation);
    CHECK(fk_node_leadership(nodes[leader], &first) == FK_STATUS_NOT_LEADER ||
          first.token.generation < second.token.generation);

    fk_fence *fence = open_fence(temp_dir());
    fk_verdict v;
    fk_token old = {.generation = second.token.generation - 1, .holder = (uint64_t)leader + 1};
    OK(fk_fence_check_key(fence, (const uint8_t *)"j", 1, second.token, &v));
    CHECK(v.kind == FK_VERDICT_ADVANCED);
    OK(fk_fence_check_key(fence, (const uint8_t *)"j", 1, old, &v));
    CHECK(v.kind == FK_VERDICT_STALE);
    fk_fence_free(fence);
    for (int i = 0; i < N; i++) {
        OK(fk_node_stop(nodes[i]));
        fk_node_free(nodes[i]);
    }
}

/* A node whose thread dies (the test hook) says so through every call (I9): no leadership,
 * FK_STATUS_NODE_FAILED with the cause, an FK_LOST_FAILED event, "failed" in its status. */
static void test_node_failed(void) {
    const char *certs = certs_for(5, 1);
    char config[768];
    int len = snprintf(config, sizeof config,
                       "{\"id\": 1, \"cluster\": 5, \"data_dir\": \"%s\", \"listen\": \"127.0.0.1:%d\","
                       " \"tls\": {\"dir\": \"%s/node-1\"}, \"test_hooks\": true,"
                       " \"timing\": {\"tick_ms\": %ld, \"margin_ms\": %ld}}",
                       temp_dir(), free_port(), certs, 10 * slow(), 10 * slow());
    fk_node *node = NULL;
    OK(fk_node_start(config, (size_t)len, &node));
    fk_leadership leadership;
    fk_status s = wait_for_leadership(node, &leadership);
    CHECK(s == FK_STATUS_OK);
    fk_event event;
    while (fk_node_next_event(node, 0, &event) == FK_STATUS_OK) {
    }
    OK(fk_node_panic_for_testing(node));
    int lost = 0;
    for (int i = 0; i < 100 && !lost; i++) {
        s = fk_node_next_event(node, (uint32_t)(100 * slow()), &event);
        lost = s == FK_STATUS_OK && event.kind == FK_EVENT_LOST;
    }
    CHECK(lost && event.lost_reason == FK_LOST_FAILED && event.token.holder == 1);
    EXPECT(fk_node_leadership(node, &leadership), FK_STATUS_NODE_FAILED);
    CHECK(strstr(fk_last_error_message(), "panicked") != NULL);
    uint64_t index;
    EXPECT(fk_node_propose(node, (const uint8_t *)"x", 1, 10, &index), FK_STATUS_NODE_FAILED);
    EXPECT(fk_node_step_down(node, &index), FK_STATUS_NODE_FAILED);
    while ((s = fk_node_next_event(node, 0, &event)) == FK_STATUS_OK) {
    }
    CHECK(s == FK_STATUS_NODE_FAILED);
    fk_buf status = {0};
    OK(fk_node_status_json(node, &status));
    CHECK(strstr((const char *)status.data, "\"failed\":true") != NULL);
    CHECK(strstr((const char *)status.data, "\"leading_generation\":null") != NULL);
    CHECK(strstr((const char *)status.data, "\"role\":\"follower\",\"leader\":null") != NULL);
    fk_buf_release(&status);
    EXPECT(fk_node_stop(node), FK_STATUS_NODE_FAILED);
    fk_node_free(node);

    /* Without "test_hooks" the hook is refused and the node goes on. */
    len = single_config(config, sizeof config, temp_dir(), free_port(), 5, certs);
    OK(fk_node_start(config, (size_t)len, &node));
    EXPECT(fk_node_panic_for_testing(node), FK_STATUS_INVALID_ARGUMENT);
    EXPECT(fk_node_panic_for_testing(NULL), FK_STATUS_NULL_ARGUMENT);
    OK(fk_node_stop(node));
    fk_node_free(node);
}

/* Development certificates, and certificate files a node refuses. */
static void test_dev_certs(void) {
    const char *certs = certs_for(11, 2);
    uint64_t ids[] = {1};
    EXPECT(fk_dev_certs_init(certs, strlen(certs), 11, ids, 1), FK_STATUS_TLS);
    CHECK(strstr(fk_last_error_message(), "already holds a CA") != NULL);
    uint64_t zero[] = {0};
    const char *fresh = temp_dir();
    EXPECT(fk_dev_certs_init(fresh, strlen(fresh), 11, zero, 1), FK_STATUS_INVALID_ARGUMENT);
    EXPECT(fk_dev_certs_init(NULL, 4, 11, ids, 1), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_dev_certs_init(certs, strlen(certs), 11, NULL, 1), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_dev_certs_add(certs, strlen(certs), 2), FK_STATUS_TLS);
    OK(fk_dev_certs_add(certs, strlen(certs), 3));
    EXPECT(fk_dev_certs_add(certs, strlen(certs), 0), FK_STATUS_INVALID_ARGUMENT);
    EXPECT(fk_dev_certs_add(fresh, strlen(fresh), 4), FK_STATUS_TLS);
    CHECK(strstr(fk_last_error_message(), "no development CA") != NULL);

    /* A key its group or others can read is refused, naming the file. */
    char key[256];
    snprintf(key, sizeof key, "%s/node-1/node.key", certs);
    CHECK(chmod(key, 0644) == 0);
    char config[768];
    int len = single_config(config, sizeof config, temp_dir(), free_port(), 11, certs);
    fk_node *node = NULL;
    EXPECT(fk_node_start(config, (size_t)len, &node), FK_STATUS_TLS);
    CHECK(node == NULL && strstr(fk_last_error_message(), "node.key") != NULL);
    /* A node of another cluster than its certificate says. */
    CHECK(chmod(key, 0600) == 0);
    len = single_config(config, sizeof config, temp_dir(), free_port(), 12, certs);
    EXPECT(fk_node_start(config, (size_t)len, &node), FK_STATUS_TLS);
    CHECK(strstr(fk_last_error_message(), "cluster 11") != NULL);
}

/* ---- policies ------------------------------------------------------------------------- */

/* plugins/examples/wat/max_payload.wat: rejects payloads over 256 bytes with reason 1. */
static const char MAX_PAYLOAD_WAT[] =
    "(module (memory (export \"memory\") 1)"
    " (func (export \"fk_abi_version\") (result i32) (i32.const 1))"
    " (func (export \"fk_input\") (result i32) (i32.const 4096))"
    " (func (export \"fk_input_capacity\") (result i32) (i32.const 61440))"
    " (func (export \"fk_validate\") (param i32) (result i32)"
    "   (if (result i32) (i32.gt_u (i32.load offset=44 (i32.const 4096)) (i32.const 256))"
    "     (then (i32.const 1)) (else (i32.const 0)))))";

/* A tie-breaker whose priority is 100 minus the node id and which keeps current holders. */
static const char TIE_BREAKER_WAT[] =
    "(module (memory (export \"memory\") 1)"
    " (func (export \"fk_abi_version\") (result i32) (i32.const 1))"
    " (func (export \"fk_input\") (result i32) (i32.const 1024))"
    " (func (export \"fk_input_capacity\") (result i32) (i32.const 1024))"
    " (func (export \"fk_election_priority\") (param i32) (result i64)"
    "   (i64.sub (i64.const 100) (i64.load offset=8 (i32.const 1024))))"
    " (func (export \"fk_resolve_conflict\") (param i32) (result i32) (i32.const 0)))";

static void test_policy(void) {
    fk_policy *validator = NULL, *tie_breaker = NULL, *refused = NULL;
    OK(fk_policy_load_wasm((const uint8_t *)MAX_PAYLOAD_WAT, strlen(MAX_PAYLOAD_WAT), FK_POLICY_VALIDATOR,
                           NULL, &validator));
    OK(fk_policy_load_wasm((const uint8_t *)TIE_BREAKER_WAT, strlen(TIE_BREAKER_WAT), FK_POLICY_TIE_BREAKER,
                           NULL, &tie_breaker));

    fk_fence *fence = open_fence(temp_dir());
    uint32_t id;
    OK(fk_fence_register(fence, (const uint8_t *)"ledger", 6, &id));
    OK(fk_fence_set_validator(fence, validator));
    fk_policy_free(validator); /* the fence keeps its own reference */
    OK(fk_fence_set_tie_breaker(fence, tie_breaker));
    uint8_t payload[300] = {0};
    fk_write_verdict w;
    OK(fk_fence_check_write(fence, id, tok(2, 1), payload, 10, &w));
    CHECK(w.accepted == 1 && w.fence.kind == FK_VERDICT_ADVANCED && w.rejection_code == 0);
    OK(fk_fence_check_write(fence, id, tok(2, 1), payload, sizeof payload, &w));
    CHECK(w.accepted == 0 && w.fence.kind == FK_VERDICT_ACCEPTED && w.rejection_code == 1);
    OK(fk_fence_check_write(fence, id, tok(1, 1), payload, 10, &w));
    CHECK(w.accepted == 0 && w.fence.kind == FK_VERDICT_STALE && w.rejection_code == 0);
    OK(fk_fence_check_write(fence, id, tok(2, 9), payload, 10, &w)); /* the tie-breaker keeps node 1 */
    CHECK(w.accepted == 0 && w.fence.kind == FK_VERDICT_CONFLICT);
    EXPECT(fk_fence_check_write(fence, id, tok(2, 1), NULL, 10, &w), FK_STATUS_NULL_ARGUMENT);
    EXPECT(fk_fence_set_validator(fence, tie_breaker), FK_STATUS_INVALID_ARGUMENT);
    OK(fk_fence_set_validator(fence, NULL));
    OK(fk_fence_check_write(fence, id, tok(2, 1), payload, sizeof payload, &w));
    CHECK(w.accepted == 1);
    fk_fence_free(fence);

    /* Refused at load, naming the cause. */
    const char wasi[] = "(module (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32))))";
    EXPECT(fk_policy_load_wasm((const uint8_t *)wasi, strlen(wasi), FK_POLICY_VALIDATOR, NULL, &refused),
           FK_STATUS_POLICY_REFUSED);
    CHECK(refused == NULL && strstr(fk_last_error_message(), "fd_write") != NULL);
    EXPECT(fk_policy_load_wasm((const uint8_t *)"junk", 4, FK_POLICY_VALIDATOR, NULL, &refused),
           FK_STATUS_POLICY_REFUSED);
    EXPECT(fk_policy_load_wasm((const uint8_t *)MAX_PAYLOAD_WAT, strlen(MAX_PAYLOAD_WAT), 7, NULL, &refused),
           FK_STATUS_INVALID_ARGUMENT);
    EXPECT(fk_policy_load_wasm((const uint8_t *)MAX_PAYLOAD_WAT, strlen(MAX_PAYLOAD_WAT), FK_POLICY_TIE_BREAKER,
                               NULL, &refused),
           FK_STATUS_POLICY_REFUSED);
    EXPECT(fk_policy_load_wasm(NULL, 0, FK_POLICY_VALIDATOR, NULL, &refused), FK_STATUS_INVALID_ARGUMENT);
    fk_policy_limits limits;
    OK(fk_policy_limits_default(&limits));
    limits.module_bytes_max = 16;
    EXPECT(fk_policy_load_wasm((const uint8_t *)MAX_PAYLOAD_WAT, strlen(MAX_PAYLOAD_WAT), FK_POLICY_VALIDATOR,
                               &limits, &refused),
           FK_STATUS_POLICY_REFUSED);
    CHECK(strstr(fk_last_error_message(), "module_bytes_max") != NULL);

    /* A node whose election priority the policy decides. */
    const char *dir = temp_dir();
    const char *certs = certs_for(3, 1);
    char config[512];
    int len = snprintf(config, sizeof config,
                       "{\"id\": 1, \"cluster\": 3, \"data_dir\": \"%s\", \"listen\": \"127.0.0.1:%d\","
                       " \"tls\": {\"dir\": \"%s/node-1\"},"
                       " \"descriptor\": \"zone=a\", \"timing\": {\"tick_ms\": %ld, \"margin_ms\": %ld}}",
                       dir, free_port(), certs, 10 * slow(), 10 * slow());
    fk_node *node = NULL;
    EXPECT(fk_node_start_with_policy(config, (size_t)len, tie_breaker, &node),
           FK_STATUS_OK);
    fk_leadership leadership;
    fk_status s = wait_for_leadership(node, &leadership);
    CHECK(s == FK_STATUS_OK);
    OK(fk_node_stop(node));
    fk_node_free(node);
    fk_policy_free(tie_breaker);
    fk_policy_free(NULL);
}

/* ---- log callback --------------------------------------------------------------------- */

/* Starts node 1 of a two-node group whose peer's address has a typo ("127.0.0.l"): it cannot
 * lead, and its transport warns, from its own thread, that the peer does not resolve. */
static fk_status start_with_typo_peer(fk_node **node) {
    const char *dir = temp_dir();
    const char *certs = certs_for(7, 2);
    char config[768];
    int len = snprintf(config, sizeof config,
                       "{\"id\": 1, \"cluster\": 7, \"data_dir\": \"%s\", \"listen\": \"127.0.0.1:%d\","
                       " \"peers\": [{\"id\": 2, \"addr\": \"127.0.0.l:7001\"}],"
                       " \"tls\": {\"dir\": \"%s/node-1\"}}",
                       dir, free_port(), certs);
    return fk_node_start(config, (size_t)len, node);
}


/* What the callback saw: records are written by kernel threads while the test reads. */
struct log_seen {
    pthread_mutex_t lock;
    pthread_t test_thread;
    int records;
    int unreachable_warning; /* the typo'd peer's warning, from a kernel thread */
    int after_removal;       /* records delivered after fk_set_log_callback(NULL) returned */
    int removed;
    int bad_level;
};

static void on_log(void *context, fk_log_level level, const char *target, const char *message) {
    struct log_seen *seen = context;
    pthread_mutex_lock(&seen->lock);
    seen->records++;
    if (seen->removed) seen->after_removal++;
    if (level < FK_LOG_ERROR || level > FK_LOG_TRACE || target == NULL || target[0] == '\0')
        seen->bad_level++;
    if (level == FK_LOG_WARN && strstr(message, "127.0.0.l") != NULL &&
        !pthread_equal(pthread_self(), seen->test_thread))
        seen->unreachable_warning++;
    pthread_mutex_unlock(&seen->lock);
}

static void test_log_callback(void) {
    static struct log_seen seen = {.lock = PTHREAD_MUTEX_INITIALIZER};
    seen.test_thread = pthread_self();
    EXPECT(fk_set_log_callback(on_log, &seen, FK_LOG_TRACE + 1), FK_STATUS_INVALID_ARGUMENT);
    OK(fk_set_log_callback(on_log, &seen, FK_LOG_WARN));

    /* A peer address with a typo: the node starts (with 1 of 2, it cannot lead) and says so. */
    fk_node *node = NULL;
    OK(start_with_typo_peer(&node));
    int warned = 0;
    for (int i = 0; i < 500 * slow() && !warned; i++) {
        pthread_mutex_lock(&seen.lock);
        warned = seen.unreachable_warning;
        pthread_mutex_unlock(&seen.lock);
        if (!warned) sleep_ms(10);
    }
    CHECK(warned == 1);

    /* Once removed, the callback is never called again, though the node keeps retrying. */
    OK(fk_set_log_callback(NULL, NULL, FK_LOG_TRACE));
    pthread_mutex_lock(&seen.lock);
    seen.removed = 1;
    pthread_mutex_unlock(&seen.lock);
    sleep_ms(300 * slow());
    fk_node_free(node);
    pthread_mutex_lock(&seen.lock);
    int after = seen.after_removal, bad = seen.bad_level;
    pthread_mutex_unlock(&seen.lock);
    CHECK(after == 0);
    CHECK(bad == 0);
}

/* A callback that stays inside long enough for the test to fork meanwhile. */
static volatile int slow_inside;
static void slow_log(void *context, fk_log_level level, const char *target, const char *message) {
    (void)context, (void)level, (void)target, (void)message;
    slow_inside = 1;
    sleep_ms(500);
}

/* A fork while a kernel thread is inside the callback: the child inherits no lock held by
 * that thread (which does not exist there), so it may set its own callback at once. */
static void test_log_callback_fork(void) {
    slow_inside = 0;
    OK(fk_set_log_callback(slow_log, NULL, FK_LOG_WARN));
    fk_node *node = NULL;
    OK(start_with_typo_peer(&node));
    for (int i = 0; i < 500 * slow() && !slow_inside; i++) sleep_ms(10);
    CHECK(slow_inside);
    pid_t child = fork();
    if (child == 0) {
        alarm(5); /* a hang is a failure, not a stuck test run */
        _exit(fk_set_log_callback(NULL, NULL, FK_LOG_OFF) == FK_STATUS_OK ? 0 : 1);
    }
    CHECK(child > 0);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    OK(fk_set_log_callback(NULL, NULL, FK_LOG_OFF));
    fk_node_free(node);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- runner --------------------------------------------------------------------------- */

/* Tokens from another coordinator: a re-created etcd cluster is let in only by a rebase, and
 * its predecessor's zombie is refused as foreign however high its revision. */
static void test_fence_sources(void) {
    const char *dir = temp_dir();
    fk_fence *fence = open_fence(dir);
    const char *old_etcd = "etcd:000000000000000a", *new_etcd = "etcd:000000000000000b";
    uint32_t old_id, new_id, r;
    OK(fk_fence_source_id(fence, old_etcd, strlen(old_etcd), &old_id));
    OK(fk_fence_source_id(fence, new_etcd, strlen(new_etcd), &new_id));
    CHECK(old_id != new_id && old_id != FK_SOURCE_UNNAMED);
    OK(fk_fence_register(fence, (const uint8_t *)"scheduler", 9, &r));

    fk_token zombie, leader;
    OK(fk_token_from_etcd(1000000, 0x694d8f0a2c11e703LL, &zombie));
    CHECK(zombie.generation == 1000000 && zombie.holder == 0x694d8f0a2c11e703ULL);
    fk_verdict v;
    OK(fk_fence_check_from(fence, r, old_id, zombie, &v));
    CHECK(v.kind == FK_VERDICT_ADVANCED);
    /* The same numbers from another source, the unnamed one included, are foreign. */
    OK(fk_fence_check_from(fence, r, new_id, zombie, &v));
    CHECK(v.kind == FK_VERDICT_FOREIGN_SOURCE && !fk_verdict_is_accepted(&v));
    OK(fk_fence_check(fence, r, zombie, &v));
    CHECK(v.kind == FK_VERDICT_FOREIGN_SOURCE);

    fk_buf bound = {0};
    OK(fk_fence_bound_source(fence, r, &bound));
    CHECK(bound.len == strlen(old_etcd) && memcmp(bound.data, old_etcd, bound.len) == 0);
    fk_buf_release(&bound);

    fk_token cleared;
    EXPECT(fk_fence_rebase(fence, (const uint8_t *)"scheduler", 9, old_etcd, strlen(old_etcd),
                           "ops", 3, &cleared),
           FK_STATUS_REBASE_REFUSED);
    CHECK(strstr(fk_last_error_message(), "new source") != NULL);
    EXPECT(fk_fence_rebase(fence, (const uint8_t *)"scheduler", 9, new_etcd, strlen(new_etcd),
                           "a\nb", 3, &cleared),
           FK_STATUS_REBASE_REFUSED);
    OK(fk_fence_rebase(fence, (const uint8_t *)"scheduler", 9, new_etcd, strlen(new_etcd),
                       "alice CHG-7", 11, &cleared));
    CHECK(cleared.generation == 1000000);
    OK(fk_token_from_etcd(5, 77, &leader));
    OK(fk_fence_check_from(fence, r, new_id, leader, &v));
    CHECK(v.kind == FK_VERDICT_ADVANCED && v.previous.generation == 0);
    OK(fk_fence_check_from(fence, r, old_id, zombie, &v));
    CHECK(v.kind == FK_VERDICT_FOREIGN_SOURCE);
    fk_fence_free(fence);

    /* Durable: ids are given anew after reopening, the binding is kept. */
    fence = open_fence(dir);
    OK(fk_fence_lookup(fence, (const uint8_t *)"scheduler", 9, &r));
    OK(fk_fence_source_id(fence, old_etcd, strlen(old_etcd), &old_id));
    OK(fk_fence_check_from(fence, r, old_id, zombie, &v));
    CHECK(v.kind == FK_VERDICT_FOREIGN_SOURCE);

    /* Names are checked without a fence too, by the same rules. */
    OK(fk_source_validate(new_etcd, strlen(new_etcd)));
    OK(fk_source_validate("unnamed", 7));
    EXPECT(fk_source_validate("Etcd:x", 6), FK_STATUS_INVALID_SOURCE);
    CHECK(strstr(fk_last_error_message(), "lowercase") != NULL);

    /* Bad input: names, ids, mappings. */
    uint32_t id = 7;
    EXPECT(fk_fence_source_id(fence, "etcd", 4, &id), FK_STATUS_INVALID_SOURCE);
    EXPECT(fk_fence_source_id(fence, "etcd: x", 7, &id), FK_STATUS_INVALID_SOURCE);
    EXPECT(fk_fence_source_id(fence, "etcd:\xff", 6, &id), FK_STATUS_INVALID_UTF8);
    EXPECT(fk_fence_source_id(fence, NULL, 5, &id), FK_STATUS_NULL_ARGUMENT);
    CHECK(id == 7);
    EXPECT(fk_fence_check_from(fence, r, 999, leader, &v), FK_STATUS_INVALID_SOURCE);
    CHECK(v.kind == FK_VERDICT_NONE);
    EXPECT(fk_token_from_etcd(0, 1, &leader), FK_STATUS_INVALID_TOKEN);
    EXPECT(fk_token_from_etcd(1, 0, &leader), FK_STATUS_INVALID_TOKEN);
    EXPECT(fk_token_from_zookeeper(-5, 1, &leader), FK_STATUS_INVALID_TOKEN);
    OK(fk_token_from_zookeeper(0x100000003LL, INT64_MIN, &leader));
    CHECK(leader.generation == 0x100000003ULL && leader.holder == 0x8000000000000000ULL);
    OK(fk_token_from_kubernetes_lease(0, "foobar", 6, &leader));
    CHECK(leader.generation == 1 && leader.holder == 0x85944171f73967e8ULL);
    EXPECT(fk_token_from_kubernetes_lease(-1, "foobar", 6, &leader), FK_STATUS_INVALID_TOKEN);
    EXPECT(fk_token_from_kubernetes_lease(3, "", 0, &leader), FK_STATUS_INVALID_TOKEN);
    fk_fence_free(fence);
}

static const struct {
    const char *name;
    void (*run)(void);
} tests[] = {
    {"version", test_version},
    {"fence_verdicts_and_reopen", test_fence_verdicts_and_reopen},
    {"fence_batch", test_fence_batch},
    {"fence_batch_failure_rejects_a_reused_array", test_fence_batch_failure_rejects_a_reused_array},
    {"fence_holders_up_to_2_64", test_fence_holders_up_to_2_64},
    {"fence_bad_input", test_fence_bad_input},
    {"fence_sources", test_fence_sources},
    {"log_inspection", test_log_inspection},
    {"node_single", test_node_single},
    {"node_bad_config", test_node_bad_config},
    {"node_transfer_fences_the_old_leader", test_node_transfer_fences_the_old_leader},
    {"node_failed", test_node_failed},
    {"dev_certs", test_dev_certs},
    {"policy", test_policy},
    {"log_callback", test_log_callback},
    {"log_callback_fork", test_log_callback_fork},
};

int main(int argc, char **argv) {
    int ran = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        /* NAME runs only the tests named; -NAME runs all but those. */
        int wanted = 1;
        for (int a = 1; a < argc; a++) {
            if (argv[a][0] != '-') wanted = 0;
        }
        for (int a = 1; a < argc; a++) {
            if (argv[a][0] == '-' && strcmp(argv[a] + 1, tests[i].name) == 0) wanted = 0;
            if (argv[a][0] != '-' && strcmp(argv[a], tests[i].name) == 0) wanted = 1;
        }
        if (!wanted) continue;
        current = tests[i].name;
        int before = failures;
        tests[i].run();
        remove_temp_dirs();
        ran++;
        if (failures > before) failed++;
        printf("test %s ... %s\n", tests[i].name, failures > before ? "FAILED" : "ok");
    }
    printf("c tests: %d passed, %d failed\n", ran - failed, failed);
    return failed ? 1 : 0;
}
