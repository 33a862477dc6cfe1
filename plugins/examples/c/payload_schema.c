/*
 * payload_schema: a storage validator for a job ledger.
 *
 *   reason 10  empty payload
 *   reason 11  the first byte (the schema version) is not 1
 *   reason 12  the payload is longer than 1024 bytes
 *   reason 13  the record type (second byte) does not match the resource: keys under "jobs/"
 *              take 'J' records, keys under "config/" take 'C' records, others anything
 */
#include "fencekit_plugin.h"

FK_PLUGIN_INPUT(8192)

FK_VALIDATE {
    (void)len;
    const uint8_t *key = record->data;
    const uint8_t *payload = record->data + record->key_len;
    if (record->payload_len == 0) return 10;
    if (payload[0] != 1) return 11;
    if (record->payload_len > 1024) return 12;
    uint8_t type = record->payload_len > 1 ? payload[1] : 0;
    if (fk_plugin_starts_with(key, record->key_len, "jobs/") && type != 'J') return 13;
    if (fk_plugin_starts_with(key, record->key_len, "config/") && type != 'C') return 13;
    return FK_PLUGIN_ACCEPT;
}
