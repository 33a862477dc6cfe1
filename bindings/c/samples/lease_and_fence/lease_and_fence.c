/*
 * lease_and_fence: three nodes elect a leader; the leader writes through a fence with its
 * token; leadership moves on; the old leader, acting on the token it cached (as a paused
 * process would when it wakes), is rejected by the fence as stale.
 *
 * The nodes run in this process over loopback TCP, each with its own data directory; in a
 * real deployment each is a process on its own machine and the fence lives in the storage.
 *
 *   ./lease_and_fence
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <fencekit.h>

#define NODES 3

static void check(fk_status status, const char *what) {
    if (status != FK_STATUS_OK) {
        fprintf(stderr, "%s failed: %s: %s\n", what, fk_status_name(status), fk_last_error_message());
        exit(1);
    }
}

/* A port that was free a moment ago (the kernel picks it). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("free port");
        exit(1);
    }
    close(fd);
    return ntohs(addr.sin_port);
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to 10 s for a node other than `not` to hold usable leadership; returns its index. */
static int wait_for_leader(fk_node **nodes, int not, fk_leadership *out) {
    for (int round = 0; round < 1000; round++) {
        for (int i = 0; i < NODES; i++) {
            if (i != not && fk_node_leadership(nodes[i], out) == FK_STATUS_OK) return i;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "no leader within 10 s\n");
    exit(1);
}

/* The storage's side of a write: the fence decides whether it lands. */
static fk_verdict_kind store_write(const fk_fence *fence, uint32_t resource, fk_token token, const char *what) {
    fk_verdict verdict;
    check(fk_fence_check(fence, resource, token, &verdict), "fk_fence_check");
    const char *answer = verdict.kind == FK_VERDICT_ACCEPTED   ? "accepted"
                         : verdict.kind == FK_VERDICT_ADVANCED ? "accepted (the fence advanced to a new generation)"
                         : verdict.kind == FK_VERDICT_STALE    ? "REJECTED as stale"
                                                               : "REJECTED (conflict)";
    printf("  storage: %s with token (generation %llu, node %llu): %s\n", what,
           (unsigned long long)token.generation, (unsigned long long)token.holder, answer);
    if (verdict.kind == FK_VERDICT_STALE) {
        printf("           the fence's mark is (generation %llu, node %llu)\n",
               (unsigned long long)verdict.current.generation, (unsigned long long)verdict.current.holder);
    }
    return verdict.kind;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int main(void) {
    char root[] = "/tmp/fencekit-lease-XXXXXX";
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    int ports[NODES];
    for (int i = 0; i < NODES; i++) ports[i] = free_port();
    /* Peers prove who they are with certificates: development ones, made here. */
    char certs[512];
    snprintf(certs, sizeof certs, "%s/certs", root);
    uint64_t ids[NODES];
    for (int i = 0; i < NODES; i++) ids[i] = (uint64_t)i + 1;
    check(fk_dev_certs_init(certs, strlen(certs), 42, ids, NODES), "fk_dev_certs_init");

    fk_node *nodes[NODES] = {0};
    for (int i = 0; i < NODES; i++) {
        char config[1024];
        int len = snprintf(config, sizeof config,
                           "{\"id\": %d, \"cluster\": 42, \"data_dir\": \"%s/node-%d\","
                           " \"listen\": \"127.0.0.1:%d\", \"peers\": ["
                           "{\"id\": %d, \"addr\": \"127.0.0.1:%d\"}, {\"id\": %d, \"addr\": \"127.0.0.1:%d\"}],"
                           " \"tls\": {\"dir\": \"%s/node-%d\"}}",
                           i + 1, root, i + 1, ports[i], (i + 1) % NODES + 1, ports[(i + 1) % NODES],
                           (i + 2) % NODES + 1, ports[(i + 2) % NODES], certs, i + 1);
        check(fk_node_start(config, (size_t)len, &nodes[i]), "fk_node_start");
    }
    printf("three nodes started on ports %d, %d, %d\n", ports[0], ports[1], ports[2]);

    char fence_dir[512];
    snprintf(fence_dir, sizeof fence_dir, "%s/storage", root);
    fk_fence *fence = NULL;
    check(fk_fence_open(fence_dir, strlen(fence_dir), NULL, &fence), "fk_fence_open");
    const char *key = "ledger/nightly-report";
    uint32_t ledger;
    check(fk_fence_register(fence, (const uint8_t *)key, strlen(key), &ledger), "fk_fence_register");

    fk_leadership first;
    int old = wait_for_leader(nodes, -1, &first);
    printf("node %d leads in generation %llu; its lease has %.0f ms left\n", old + 1,
           (unsigned long long)first.token.generation, first.lease_remaining_ns / 1e6);
    store_write(fence, ledger, first.token, "job 1 done");
    store_write(fence, ledger, first.token, "job 2 done");

    /* The old leader keeps `first.token`, as a process paused mid-job would. */
    uint64_t successor = 0;
    check(fk_node_step_down(nodes[old], &successor), "fk_node_step_down");
    printf("node %d hands leadership to node %llu (its lease is revoked first)\n", old + 1,
           (unsigned long long)successor);

    fk_leadership second;
    int now = wait_for_leader(nodes, old, &second);
    printf("node %d leads in generation %llu\n", now + 1, (unsigned long long)second.token.generation);
    store_write(fence, ledger, second.token, "job 3 done");

    fk_leadership ignored;
    fk_status status = fk_node_leadership(nodes[old], &ignored);
    printf("node %d asks whether it still leads: %s (%s)\n", old + 1, fk_status_name(status),
           fk_last_error_message());
    printf("node %d writes anyway, with the token it cached:\n", old + 1);
    fk_verdict_kind zombie = store_write(fence, ledger, first.token, "job 2 done (again)");

    fk_counters counters;
    check(fk_fence_counters(fence, ledger, &counters), "fk_fence_counters");
    printf("fence: %llu accepted, %llu advanced, %llu stale\n", (unsigned long long)counters.accepted,
           (unsigned long long)counters.advanced, (unsigned long long)counters.stale);

    fk_fence_free(fence);
    for (int i = 0; i < NODES; i++) {
        check(fk_node_stop(nodes[i]), "fk_node_stop");
        fk_node_free(nodes[i]);
    }
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (zombie != FK_VERDICT_STALE) {
        fprintf(stderr, "the old leader's write was not rejected\n");
        return 1;
    }
    printf("the zombie's write was rejected: one leader's writes at a time, whatever the clocks say\n");
    return 0;
}
