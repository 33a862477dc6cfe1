/*
 * libfencekit built without the WebAssembly plugin host (ffi's `plugins` feature off): every
 * call that needs a plugin answers FK_STATUS_PLUGINS_DISABLED with a message saying so, and a
 * fence works as in the full build.
 *
 *   ./test_minimal
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fencekit.h>

static int failures;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__,       \
                    __LINE__, #cond, fk_last_error_message());                            \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

int main(void) {
    static const char wat[] = "(module)";
    fk_policy *policy = NULL;
    CHECK(fk_policy_load_wasm((const uint8_t *)wat, sizeof wat - 1, FK_POLICY_VALIDATOR, NULL,
                              &policy) == FK_STATUS_PLUGINS_DISABLED);
    CHECK(policy == NULL);
    CHECK(strstr(fk_last_error_message(), "without the WebAssembly plugin host") != NULL);
    fk_policy_limits limits;
    CHECK(fk_policy_limits_default(&limits) == FK_STATUS_PLUGINS_DISABLED);
    CHECK(strcmp(fk_status_name(FK_STATUS_PLUGINS_DISABLED), "FK_STATUS_PLUGINS_DISABLED") == 0);

    char dir[] = "/tmp/fencekit-minimal-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    fk_fence *fence = NULL;
    CHECK(fk_fence_open(dir, strlen(dir), NULL, &fence) == FK_STATUS_OK);
    uint32_t id = 0;
    CHECK(fk_fence_register(fence, (const uint8_t *)"jobs", 4, &id) == FK_STATUS_OK);
    fk_token token = {.generation = 3, .holder = 1};
    fk_verdict verdict;
    CHECK(fk_fence_check(fence, id, token, &verdict) == FK_STATUS_OK);
    CHECK(verdict.kind == FK_VERDICT_ADVANCED);
    CHECK(fk_fence_check(fence, id, token, &verdict) == FK_STATUS_OK);
    CHECK(verdict.kind == FK_VERDICT_ACCEPTED);
    token.generation = 2;
    CHECK(fk_fence_check(fence, id, token, &verdict) == FK_STATUS_OK);
    CHECK(verdict.kind == FK_VERDICT_STALE);
    /* Detaching (NULL) needs no plugin host. */
    CHECK(fk_fence_set_validator(fence, NULL) == FK_STATUS_OK);
    fk_fence_free(fence);
    char command[96];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    CHECK(system(command) == 0);

    printf("test minimal_library ... %s\n", failures ? "FAILED" : "ok");
    printf("c tests: %d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
