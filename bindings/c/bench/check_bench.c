/*
 * The fence check called from C, linked statically as a C program (or Go) would link it,
 * beside a bare atomic load-and-compare in the same run. Prints the median of 11 rounds.
 *
 *   make -C bindings/c bench          (criterion's `ffi` bench has the Rust check beside it)
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fencekit.h>

#define ROUNDS 11
#define ITERS 20000000L
#define BATCH 256

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v) {
    qsort(v, ROUNDS, sizeof v[0], by_value);
    return v[ROUNDS / 2];
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void must(fk_status status, const char *what) {
    if (status != FK_STATUS_OK) {
        fprintf(stderr, "%s: %s\n", what, fk_last_error_message());
        exit(1);
    }
}

int main(void) {
    char dir[] = "/tmp/fencekit-cbench-XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    fk_fence *fence;
    must(fk_fence_open(dir, strlen(dir), NULL, &fence), "open");
    uint32_t id;
    must(fk_fence_register(fence, (const uint8_t *)"tenant-7/jobs/42", 16, &id), "register");
    fk_token token = {.generation = 1, .holder = 1};
    fk_verdict verdict;
    must(fk_fence_check(fence, id, token, &verdict), "first check");

    static fk_check_item items[BATCH];
    static fk_verdict verdicts[BATCH];
    for (int i = 0; i < BATCH; i++) items[i] = (fk_check_item){.resource = id, .token = token};

    /* The physical limit: one acquire load of a 64-bit word and a compare. */
    static uint64_t mark = (1u << 16) | 1;
    double atomic[ROUNDS], check[ROUNDS], batch[ROUNDS];
    unsigned long sink = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_ns();
        for (long i = 0; i < ITERS; i++) {
            uint64_t expected = (1u << 16) | 1;
            __asm__ volatile("" : "+r"(expected)); /* keep the compare in the loop */
            sink += __atomic_load_n(&mark, __ATOMIC_ACQUIRE) == expected;
        }
        double t1 = now_ns();
        for (long i = 0; i < ITERS; i++) {
            sink += fk_fence_check(fence, id, token, &verdict) == FK_STATUS_OK && verdict.kind == FK_VERDICT_ACCEPTED;
        }
        double t2 = now_ns();
        for (long i = 0; i < ITERS / BATCH; i++) {
            sink += fk_fence_check_batch(fence, items, verdicts, BATCH) == FK_STATUS_OK;
        }
        double t3 = now_ns();
        atomic[r] = (t1 - t0) / ITERS;
        check[r] = (t2 - t1) / ITERS;
        batch[r] = (t3 - t2) / (double)(ITERS / BATCH * BATCH);
    }
    double a = median(atomic), c = median(check), b = median(batch);
    printf("c_atomic_baseline          %6.2f ns   1.0x\n", a);
    printf("fk_fence_check (static)    %6.2f ns  %4.1fx\n", c, c / a);
    printf("fk_fence_check_batch_256   %6.2f ns per check  %4.1fx\n", b, b / a);
    fk_fence_free(fence);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return sink == 0; /* use the results */
}
