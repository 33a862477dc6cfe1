/*
 * zone_tiebreaker: prefer leaders in zone A, then the lowest node id.
 *
 * Each node's descriptor is configured by the host, for example "zone=a". Priority puts every
 * zone-A node above every other node, and a lower id above a higher one within a zone. A
 * conflict (two holders of one generation) goes to the lower node id: deterministic on every
 * replica, which is all a tie-breaker must be.
 */
#include "fencekit_plugin.h"

FK_PLUGIN_INPUT(1024)

FK_ELECTION_PRIORITY {
    (void)len;
    int in_zone_a = fk_plugin_starts_with(record->descriptor, record->header.length, "zone=a");
    int64_t id = record->node < (1ull << 32) ? (int64_t)record->node : (int64_t)(1ull << 32);
    return (in_zone_a ? (1ll << 40) : 0) + ((1ll << 32) - id);
}

FK_RESOLVE_CONFLICT {
    (void)len;
    return record->challenger_holder < record->current_holder ? FK_PLUGIN_CHALLENGER : FK_PLUGIN_KEEP_CURRENT;
}
