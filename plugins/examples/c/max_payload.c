/*
 * max_payload: rejects a write whose payload is longer than 256 bytes (reason 1). The same
 * rule as examples/wat/max_payload.wat, for comparing the two in benches/benches/plugins.rs.
 */
#include "fencekit_plugin.h"

FK_PLUGIN_INPUT(61440)

FK_VALIDATE {
    (void)len;
    return record->payload_len > 256 ? 1 : FK_PLUGIN_ACCEPT;
}
