/*
 * basic: a storage fences the writes of its leaders.
 *
 * The storage opens a fence on a directory and checks the token of every write. A newer
 * leader's token advances the resource's mark (durably, before the write is accepted); an
 * older leader's token is refused from then on, even after the storage restarts.
 *
 *   ./basic [DIR]        (default: a new directory under /tmp)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fencekit.h>

static const char *verdict_name(fk_verdict_kind kind) {
    switch (kind) {
    case FK_VERDICT_ACCEPTED: return "accepted";
    case FK_VERDICT_ADVANCED: return "advanced (new leader, mark now durable)";
    case FK_VERDICT_STALE: return "STALE: rejected";
    case FK_VERDICT_CONFLICT: return "CONFLICT: rejected (split brain)";
    default: return "no verdict";
    }
}

/* Prints the failure and exits: every fencekit call returns a status and leaves a message. */
static void check(fk_status status, const char *what) {
    if (status != FK_STATUS_OK) {
        fprintf(stderr, "%s failed: %s: %s\n", what, fk_status_name(status), fk_last_error_message());
        exit(1);
    }
}

/* One write by `holder` under `generation`: the storage asks the fence first. */
static int write_job(const fk_fence *fence, uint32_t resource, uint64_t generation, uint64_t holder) {
    fk_token token = {.generation = generation, .holder = holder};
    fk_verdict verdict;
    check(fk_fence_check(fence, resource, token, &verdict), "fk_fence_check");
    printf("  write by node %llu under generation %llu: %s\n", (unsigned long long)holder,
           (unsigned long long)generation, verdict_name(verdict.kind));
    return fk_verdict_is_accepted(&verdict);
}

int main(int argc, char **argv) {
    char template[] = "/tmp/fencekit-basic-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(template);
    if (dir == NULL) {
        perror("mkdtemp");
        return 1;
    }
    printf("fencekit %s (ABI %u), fence in %s\n", fk_version(), fk_abi_version(), dir);
    if (fk_abi_version() != FK_ABI_VERSION) {
        fprintf(stderr, "libfencekit has ABI %u, this program was built for %u\n", fk_abi_version(),
                FK_ABI_VERSION);
        return 1;
    }

    fk_fence *fence = NULL;
    check(fk_fence_open(dir, strlen(dir), NULL, &fence), "fk_fence_open");
    const char *key = "jobs/nightly-report";
    uint32_t jobs;
    check(fk_fence_register(fence, (const uint8_t *)key, strlen(key), &jobs), "fk_fence_register");

    printf("node 1 leads in generation 4:\n");
    write_job(fence, jobs, 4, 1);
    write_job(fence, jobs, 4, 1);
    printf("node 2 is elected in generation 5:\n");
    write_job(fence, jobs, 5, 2);
    printf("node 1 wakes from a long pause and writes with its old token:\n");
    int zombie_accepted = write_job(fence, jobs, 4, 1);

    fk_counters counters;
    check(fk_fence_counters(fence, jobs, &counters), "fk_fence_counters");
    printf("counters: %llu accepted, %llu advanced, %llu stale\n", (unsigned long long)counters.accepted,
           (unsigned long long)counters.advanced, (unsigned long long)counters.stale);
    fk_fence_free(fence);

    printf("the storage restarts; the mark survived:\n");
    check(fk_fence_open(dir, strlen(dir), NULL, &fence), "fk_fence_open");
    fk_verdict verdict;
    fk_token old = {.generation = 4, .holder = 1};
    check(fk_fence_check_key(fence, (const uint8_t *)key, strlen(key), old, &verdict), "fk_fence_check_key");
    printf("  write by node 1 under generation 4: %s\n", verdict_name(verdict.kind));
    int stale_after_restart = verdict.kind == FK_VERDICT_STALE;

    /* A bad call gets a status and a message, never a crash. */
    fk_token zero = {0, 0};
    fk_status status = fk_fence_check(fence, jobs, zero, &verdict);
    printf("a token of generation 0: %s (%s)\n", fk_status_name(status), fk_last_error_message());
    fk_fence_free(fence);

    if (zombie_accepted || !stale_after_restart) {
        fprintf(stderr, "a stale write was accepted\n");
        return 1;
    }
    return 0;
}
