/*
 * The conformance vectors of tests/vectors/ run against the C ABI (format:
 * tests/vectors/README.md). JSON is read with cJSON (Debian's libcjson-dev).
 *
 *   ./test_vectors DIR            run every .json file in DIR (fence vectors) and in DIR/node
 *                                 (node vectors)
 *
 * FK_TEST_SLOW=N multiplies the node vectors' timing and waits (valgrind runs the node threads
 * 20-50 times slower).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <fencekit.h>

#define KEYS_MAX 64

static const char *vector_name;
static int step_index;
static int failures;
static int failed_vectors;

#define FAIL(...)                                                                           \
    do {                                                                                    \
        fprintf(stderr, "%s step %d: ", vector_name, step_index);                           \
        fprintf(stderr, __VA_ARGS__);                                                       \
        fprintf(stderr, "\n");                                                              \
        failures++;                                                                         \
        return;                                                                             \
    } while (0)

/* A number, or a decimal string for numbers a double cannot hold. */
static uint64_t number(const cJSON *value) {
    if (cJSON_IsString(value)) return strtoull(value->valuestring, NULL, 10);
    return (uint64_t)value->valuedouble;
}

static fk_token token_of(const cJSON *pair) {
    fk_token t = {number(cJSON_GetArrayItem(pair, 0)), number(cJSON_GetArrayItem(pair, 1))};
    return t;
}

/* The step's key (or `key_len` bytes of 'k') into `buf`; its length. */
static size_t key_of(const cJSON *step, char *buf, size_t cap) {
    const cJSON *key = cJSON_GetObjectItem(step, "key");
    if (cJSON_IsString(key)) {
        snprintf(buf, cap, "%s", key->valuestring);
        return strlen(buf);
    }
    size_t len = (size_t)number(cJSON_GetObjectItem(step, "key_len"));
    if (len > cap) len = cap;
    memset(buf, 'k', len);
    return len;
}

/* Keys registered so far and their ids. */
static struct {
    char key[300];
    size_t len;
    uint32_t id;
} keys[KEYS_MAX];
static int nkeys;

static void remember(const char *key, size_t len, uint32_t id) {
    for (int i = 0; i < nkeys; i++) {
        if (keys[i].len == len && memcmp(keys[i].key, key, len) == 0) {
            keys[i].id = id;
            return;
        }
    }
    if (nkeys < KEYS_MAX && len < sizeof keys[0].key) {
        memcpy(keys[nkeys].key, key, len);
        keys[nkeys].len = len;
        keys[nkeys++].id = id;
    }
}

static int id_of(const char *key, size_t len, uint32_t *id) {
    for (int i = 0; i < nkeys; i++) {
        if (keys[i].len == len && memcmp(keys[i].key, key, len) == 0) {
            *id = keys[i].id;
            return 1;
        }
    }
    return 0;
}

/* The status as the vectors name it: FK_STATUS_INVALID_KEY is "invalid_key". */
static const char *status_name(fk_status s) {
    static char name[64];
    const char *full = fk_status_name(s);
    const char *prefix = "FK_STATUS_";
    if (strncmp(full, prefix, strlen(prefix)) == 0) full += strlen(prefix);
    size_t i = 0;
    for (; full[i] && i < sizeof name - 1; i++) name[i] = (char)tolower((unsigned char)full[i]);
    name[i] = '\0';
    return name;
}

/* The first string of `parts` (a list, or NULL) that `message` does not contain, or NULL. */
static const char *missing_from(const char *message, const cJSON *parts) {
    for (int i = 0; i < cJSON_GetArraySize(parts); i++) {
        const char *part = cJSON_GetArrayItem(parts, i)->valuestring;
        if (strstr(message, part) == NULL) return part;
    }
    return NULL;
}

static const char *verdict_name(fk_verdict_kind kind) {
    switch (kind) {
    case FK_VERDICT_ACCEPTED: return "accepted";
    case FK_VERDICT_ADVANCED: return "advanced";
    case FK_VERDICT_STALE: return "stale";
    case FK_VERDICT_CONFLICT: return "conflict";
    default: return "none";
    }
}

static int same_token(const cJSON *want, fk_token got) {
    fk_token none = {0, 0};
    fk_token w = cJSON_IsNull(want) ? none : token_of(want);
    return w.generation == got.generation && w.holder == got.holder;
}

/* What a step answered. */
typedef struct {
    fk_status status;
    int has_verdict, has_mark, has_counters, is_batch, nverdicts;
    fk_verdict verdict;
    fk_verdict verdicts[64];
    fk_token mark;
    fk_counters counters;
    char message[1024]; /* fk_last_error_message() right after the step's call */
} outcome;

/* The verdict kinds of a batch, `want` (a list of names), against what the array holds. */
static int same_kinds(const outcome *got, const cJSON *want) {
    if (cJSON_GetArraySize(want) != got->nverdicts) return 0;
    for (int i = 0; i < got->nverdicts; i++) {
        if (strcmp(verdict_name(got->verdicts[i].kind), cJSON_GetArrayItem(want, i)->valuestring) != 0) return 0;
    }
    return 1;
}

/* `fk_verdict_is_accepted` of each slot of a batch, against `want` (a list of booleans). */
static int same_acceptance(const outcome *got, const cJSON *want) {
    if (cJSON_GetArraySize(want) != got->nverdicts) return 0;
    for (int i = 0; i < got->nverdicts; i++) {
        if (fk_verdict_is_accepted(&got->verdicts[i]) != cJSON_IsTrue(cJSON_GetArrayItem(want, i))) return 0;
    }
    return 1;
}

static void compare(const outcome *got, const cJSON *expect) {
    const cJSON *want;
    const cJSON *accepted = cJSON_GetObjectItem(expect, "accepted");
    if ((want = cJSON_GetObjectItem(expect, "status"))) {
        if (strcmp(status_name(got->status), want->valuestring) != 0)
            FAIL("status %s, expected %s (%s)", status_name(got->status), want->valuestring, got->message);
        const char *missing = missing_from(got->message, cJSON_GetObjectItem(expect, "message"));
        if (got->status != FK_STATUS_OK && missing) FAIL("the message does not name \"%s\": %s", missing, got->message);
        if (got->is_batch) {
            /* What the reused array reads after the failure. */
            const cJSON *kinds = cJSON_GetObjectItem(expect, "verdicts");
            if (kinds && !same_kinds(got, kinds)) FAIL("a failed batch left verdicts that are not the expected ones");
            if (accepted && !same_acceptance(got, accepted)) FAIL("a failed batch left a verdict that reads as acceptance");
        } else if (accepted && got->has_verdict) {
            /* The C idiom tests the status, then the verdict (which held an acceptance). */
            int reads = got->status == FK_STATUS_OK && fk_verdict_is_accepted(&got->verdict);
            if (reads != cJSON_IsTrue(accepted)) FAIL("the check reads as %s", reads ? "accepted" : "rejected");
        }
        return;
    }
    if (got->status != FK_STATUS_OK) FAIL("failed with %s: %s", status_name(got->status), got->message);
    if ((want = cJSON_GetObjectItem(expect, "verdict"))) {
        if (!got->has_verdict || strcmp(verdict_name(got->verdict.kind), want->valuestring) != 0)
            FAIL("verdict %s, expected %s", verdict_name(got->verdict.kind), want->valuestring);
        const cJSON *current = cJSON_GetObjectItem(expect, "current");
        if (current && !same_token(current, got->verdict.current)) FAIL("wrong current mark");
        const cJSON *previous = cJSON_GetObjectItem(expect, "previous");
        if (previous && !same_token(previous, got->verdict.previous)) FAIL("wrong previous mark");
        if (accepted && fk_verdict_is_accepted(&got->verdict) != cJSON_IsTrue(accepted))
            FAIL("a %s verdict: fk_verdict_is_accepted is %d", verdict_name(got->verdict.kind),
                 fk_verdict_is_accepted(&got->verdict));
    } else if ((want = cJSON_GetObjectItem(expect, "verdicts"))) {
        if (cJSON_GetArraySize(want) != got->nverdicts) FAIL("%d verdicts, expected %d", got->nverdicts, cJSON_GetArraySize(want));
        for (int i = 0; i < got->nverdicts; i++) {
            const char *w = cJSON_GetArrayItem(want, i)->valuestring;
            if (strcmp(verdict_name(got->verdicts[i].kind), w) != 0)
                FAIL("verdict %d is %s, expected %s", i, verdict_name(got->verdicts[i].kind), w);
        }
        if (accepted && !same_acceptance(got, accepted)) FAIL("fk_verdict_is_accepted is not the expected one");
    } else if ((want = cJSON_GetObjectItem(expect, "mark"))) {
        if (!got->has_mark || !same_token(want, got->mark)) FAIL("wrong mark");
    } else if ((want = cJSON_GetObjectItem(expect, "counters"))) {
        uint64_t w[4], g[4] = {got->counters.accepted, got->counters.advanced, got->counters.stale,
                               got->counters.conflicts};
        const char *names[4] = {"accepted", "advanced", "stale", "conflicts"};
        for (int i = 0; i < 4; i++) {
            w[i] = number(cJSON_GetObjectItem(want, names[i]));
            if (!got->has_counters || w[i] != g[i])
                FAIL("%s = %llu, expected %llu", names[i], (unsigned long long)g[i], (unsigned long long)w[i]);
        }
    }
}

static fk_fence *open_fence(const char *dir) {
    fk_fence *fence = NULL;
    if (fk_fence_open(dir, strlen(dir), NULL, &fence) != FK_STATUS_OK) {
        fprintf(stderr, "open %s: %s\n", dir, fk_last_error_message());
        exit(2);
    }
    return fence;
}

static void run_step(fk_fence **fence, const char *dir, const cJSON *step) {
    const char *op = cJSON_GetObjectItem(step, "op")->valuestring;
    char key[300];
    size_t len = 0;
    if (cJSON_GetObjectItem(step, "key") || cJSON_GetObjectItem(step, "key_len")) len = key_of(step, key, sizeof key);
    outcome got;
    memset(&got, 0, sizeof got);
    /* Every verdict starts as an acceptance, as in a variable or an array reused from an
     * earlier call (tests/vectors/README.md): a failure must not leave it so. */
    got.verdict.kind = FK_VERDICT_ACCEPTED;
    for (int i = 0; i < 64; i++) got.verdicts[i].kind = FK_VERDICT_ACCEPTED;
    uint32_t id = 0;
    if (strcmp(op, "register") == 0) {
        got.status = fk_fence_register(*fence, (const uint8_t *)key, len, &id);
        if (got.status == FK_STATUS_OK) remember(key, len, id);
    } else if (strcmp(op, "lookup") == 0) {
        got.status = fk_fence_lookup(*fence, (const uint8_t *)key, len, &id);
    } else if (strcmp(op, "check") == 0 || strcmp(op, "check_id") == 0) {
        if (strcmp(op, "check_id") == 0) id = (uint32_t)number(cJSON_GetObjectItem(step, "id"));
        else if (!id_of(key, len, &id)) FAIL("key not registered");
        got.status = fk_fence_check(*fence, id, token_of(cJSON_GetObjectItem(step, "token")), &got.verdict);
        got.has_verdict = 1;
    } else if (strcmp(op, "check_key") == 0) {
        got.status = fk_fence_check_key(*fence, (const uint8_t *)key, len,
                                        token_of(cJSON_GetObjectItem(step, "token")), &got.verdict);
        got.has_verdict = 1;
        /* (Only after a success, so that the step's own message is the last.) */
        if (got.status == FK_STATUS_OK && fk_fence_lookup(*fence, (const uint8_t *)key, len, &id) == FK_STATUS_OK)
            remember(key, len, id);
    } else if (strcmp(op, "batch") == 0) {
        const cJSON *items = cJSON_GetObjectItem(step, "items");
        fk_check_item batch[64];
        int n = cJSON_GetArraySize(items);
        if (n > 64) FAIL("batch too long for this runner");
        for (int i = 0; i < n; i++) {
            const cJSON *item = cJSON_GetArrayItem(items, i);
            char item_key[300];
            if (cJSON_GetObjectItem(item, "id")) {
                batch[i].resource = (uint32_t)number(cJSON_GetObjectItem(item, "id"));
            } else {
                size_t item_len = key_of(item, item_key, sizeof item_key);
                if (!id_of(item_key, item_len, &batch[i].resource)) FAIL("batch key not registered");
            }
            batch[i].reserved = 0;
            batch[i].token = token_of(cJSON_GetObjectItem(item, "token"));
        }
        got.status = fk_fence_check_batch(*fence, batch, got.verdicts, (size_t)n);
        got.nverdicts = n;
        got.is_batch = 1;
    } else if (strcmp(op, "mark") == 0) {
        if (!id_of(key, len, &id)) FAIL("key not registered");
        got.status = fk_fence_mark(*fence, id, &got.mark);
        got.has_mark = 1;
    } else if (strcmp(op, "counters") == 0) {
        if (!id_of(key, len, &id)) FAIL("key not registered");
        got.status = fk_fence_counters(*fence, id, &got.counters);
        got.has_counters = 1;
    } else if (strcmp(op, "reopen") == 0) {
        fk_fence_free(*fence);
        *fence = open_fence(dir);
        for (int i = 0; i < nkeys; i++) fk_fence_lookup(*fence, (const uint8_t *)keys[i].key, keys[i].len, &keys[i].id);
    } else {
        FAIL("unknown op %s", op);
    }
    snprintf(got.message, sizeof got.message, "%s", fk_last_error_message());
    const cJSON *expect = cJSON_GetObjectItem(step, "expect");
    if (expect) compare(&got, expect);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* ---- node vectors (tests/vectors/README.md, "Node vectors") ------------------------------ */

static long slow(void) {
    const char *s = getenv("FK_TEST_SLOW");
    return s ? atol(s) : 1;
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Merges `patch` into `base`: objects field by field, a null field left out. */
static void merge(cJSON *base, const cJSON *patch) {
    for (const cJSON *field = patch->child; field; field = field->next) {
        cJSON *have = cJSON_GetObjectItemCaseSensitive(base, field->string);
        if (cJSON_IsNull(field)) {
            cJSON_DeleteItemFromObjectCaseSensitive(base, field->string);
        } else if (cJSON_IsObject(field) && cJSON_IsObject(have)) {
            merge(have, field);
        } else if (have) {
            cJSON_ReplaceItemInObjectCaseSensitive(base, field->string, cJSON_Duplicate(field, 1));
        } else {
            cJSON_AddItemToObject(base, field->string, cJSON_Duplicate(field, 1));
        }
    }
}

/* The runner's base configuration (a fresh data directory under `dir` for each start) with
 * the step's `config` merged in, as text; the caller frees it. */
static char *node_config(const char *dir, const cJSON *step) {
    static int starts;
    char data_dir[4200];
    snprintf(data_dir, sizeof data_dir, "%s/node-%d", dir, starts++);
    cJSON *config = cJSON_CreateObject();
    cJSON_AddNumberToObject(config, "id", 1);
    cJSON_AddNumberToObject(config, "cluster", 1);
    cJSON_AddStringToObject(config, "data_dir", data_dir);
    cJSON_AddStringToObject(config, "listen", "127.0.0.1:0");
    cJSON_AddTrueToObject(config, "insecure");
    cJSON *timing = cJSON_AddObjectToObject(config, "timing");
    cJSON_AddNumberToObject(timing, "tick_ms", (double)(10 * slow()));
    cJSON_AddNumberToObject(timing, "margin_ms", (double)(10 * slow()));
    const cJSON *patch = cJSON_GetObjectItem(step, "config");
    if (patch) merge(config, patch);
    char *text = cJSON_PrintUnformatted(config);
    cJSON_Delete(config);
    return text;
}

/* Every field of `want` (an object) is in `json` (the status) with that value. */
static void compare_status_json(const char *json, const cJSON *want) {
    cJSON *got = cJSON_Parse(json);
    if (!got) FAIL("the status is not JSON: %s", json);
    for (const cJSON *field = want->child; field; field = field->next) {
        const cJSON *have = cJSON_GetObjectItemCaseSensitive(got, field->string);
        if (!have || !cJSON_Compare(have, field, 1)) {
            char *w = cJSON_PrintUnformatted(field);
            fprintf(stderr, "%s step %d: status field \"%s\" is not %s: %s\n", vector_name, step_index,
                    field->string, w, json);
            cJSON_free(w);
            failures++;
        }
    }
    cJSON_Delete(got);
}

static void run_node_step(fk_node **node, const char *dir, const cJSON *step) {
    const char *op = cJSON_GetObjectItem(step, "op")->valuestring;
    fk_status status = FK_STATUS_OK;
    fk_buf json = {0};
    int started = 0;
    if (strcmp(op, "start") == 0) {
        char *config = node_config(dir, step);
        fk_node *new_node = NULL;
        status = fk_node_start(config, strlen(config), &new_node);
        cJSON_free(config);
        if (new_node) {
            started = 1;
            if (*node) fk_node_free(*node);
            *node = new_node;
        }
    } else if (strcmp(op, "await_leadership") == 0) {
        fk_leadership leadership;
        for (long waited = 0; waited < 10000 * slow(); waited += 10) {
            status = fk_node_leadership(*node, &leadership);
            if (status != FK_STATUS_NOT_LEADER) break;
            sleep_ms(10);
        }
    } else if (strcmp(op, "transfer") == 0) {
        status = fk_node_transfer(*node, number(cJSON_GetObjectItem(step, "to")));
    } else if (strcmp(op, "step_down") == 0) {
        uint64_t successor;
        status = fk_node_step_down(*node, &successor);
    } else if (strcmp(op, "stop") == 0) {
        status = fk_node_stop(*node);
    } else if (strcmp(op, "status") == 0) {
        status = fk_node_status_json(*node, &json);
    } else {
        FAIL("unknown op %s", op);
    }
    char message[1024];
    snprintf(message, sizeof message, "%s", status == FK_STATUS_OK ? "" : fk_last_error_message());
    const cJSON *expect = cJSON_GetObjectItem(step, "expect");
    const cJSON *want;
    if (expect && (want = cJSON_GetObjectItem(expect, "status"))) {
        if (strcmp(status_name(status), want->valuestring) != 0) {
            fprintf(stderr, "%s step %d: status %s, expected %s (%s)\n", vector_name, step_index, status_name(status),
                    want->valuestring, message);
            failures++;
        } else if (status != FK_STATUS_OK) {
            const char *missing = missing_from(message, cJSON_GetObjectItem(expect, "message"));
            if (missing) {
                fprintf(stderr, "%s step %d: the message does not name \"%s\": %s\n", vector_name, step_index,
                        missing, message);
                failures++;
            }
        }
        if (started && status != FK_STATUS_OK) fprintf(stderr, "a node started beside a failure\n"), failures++;
    } else if (expect && (want = cJSON_GetObjectItem(expect, "status_json"))) {
        if (status != FK_STATUS_OK) {
            fprintf(stderr, "%s step %d: status failed with %s: %s\n", vector_name, step_index, status_name(status),
                    message);
            failures++;
        } else {
            compare_status_json((const char *)json.data, want);
        }
    }
    fk_buf_release(&json);
}

/* Reads and parses a vector file; exits on a file that is not JSON. */
static cJSON *read_vector(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *vector = cJSON_Parse(text);
    if (!vector) {
        fprintf(stderr, "%s: not JSON\n", path);
        exit(2);
    }
    return vector;
}

static void run_node_file(const char *path) {
    cJSON *vector = read_vector(path);
    vector_name = cJSON_GetObjectItem(vector, "name")->valuestring;
    char dir[] = "/tmp/fencekit-vectors-XXXXXX";
    if (!mkdtemp(dir)) exit(2);
    fk_node *node = NULL;
    int before = failures;
    const cJSON *steps = cJSON_GetObjectItem(vector, "steps");
    for (step_index = 0; step_index < cJSON_GetArraySize(steps); step_index++) {
        run_node_step(&node, dir, cJSON_GetArrayItem(steps, step_index));
    }
    printf("node vector %s ... %s\n", vector_name, failures > before ? "FAILED" : "ok");
    failed_vectors += failures > before;
    fk_node_free(node);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    cJSON_Delete(vector);
}

static void run_file(const char *path) {
    cJSON *vector = read_vector(path);
    vector_name = cJSON_GetObjectItem(vector, "name")->valuestring;
    char dir[] = "/tmp/fencekit-vectors-XXXXXX";
    if (!mkdtemp(dir)) exit(2);
    fk_fence *fence = open_fence(dir);
    nkeys = 0;
    int before = failures;
    const cJSON *steps = cJSON_GetObjectItem(vector, "steps");
    for (step_index = 0; step_index < cJSON_GetArraySize(steps); step_index++) {
        run_step(&fence, dir, cJSON_GetArrayItem(steps, step_index));
    }
    printf("vector %s ... %s\n", vector_name, failures > before ? "FAILED" : "ok");
    failed_vectors += failures > before;
    fk_fence_free(fence);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    cJSON_Delete(vector);
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

/* Runs every .json file of `dir` with `run`; how many there were. */
static int run_dir(const char *dir, void (*run)(const char *)) {
    struct dirent **entries;
    int n = scandir(dir, &entries, NULL, by_name);
    if (n < 0) {
        perror(dir);
        exit(2);
    }
    int ran = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(entries[i]->d_name);
        if (len > 5 && strcmp(entries[i]->d_name + len - 5, ".json") == 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, entries[i]->d_name);
            run(path);
            ran++;
        }
        free(entries[i]);
    }
    free(entries);
    return ran;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
        return 2;
    }
    char node_dir[4096];
    snprintf(node_dir, sizeof node_dir, "%s/node", argv[1]);
    int fence_vectors = run_dir(argv[1], run_file);
    int node_vectors = run_dir(node_dir, run_node_file);
    if (fence_vectors == 0 || node_vectors == 0) {
        fprintf(stderr, "no vectors in %s or in %s\n", argv[1], node_dir);
        return 1;
    }
    int ran = fence_vectors + node_vectors;
    printf("c tests: %d passed, %d failed\n", ran - failed_vectors, failed_vectors);
    return failures ? 1 : 0;
}
