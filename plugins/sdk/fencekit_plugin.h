/*
 * fencekit plugin SDK: plugin ABI v1 for plugins written in C.
 *
 * A plugin is a core WebAssembly module. Build one with Debian's clang and lld:
 *
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -I plugins/sdk -o my_plugin.wasm my_plugin.c
 *
 * The host copies a little-endian record into the plugin's input buffer and calls one export
 * with the record's length. A plugin has no imports, except the optional host log function
 * (define FK_PLUGIN_WITH_LOG before including this header); a module importing anything else
 * is refused at load. The full contract is plugins/README.md.
 *
 * A validator defines:   FK_PLUGIN_INPUT(capacity)   and   FK_VALIDATE { ... }
 * A tie-breaker defines: FK_PLUGIN_INPUT(capacity),   FK_ELECTION_PRIORITY { ... }
 *                        and FK_RESOLVE_CONFLICT { ... }
 */
#ifndef FENCEKIT_PLUGIN_H
#define FENCEKIT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define FK_PLUGIN_ABI_VERSION 1
#define FK_PLUGIN_RECORD_VERSION 1

/* Record kinds (the second byte of every record). */
#define FK_PLUGIN_KIND_VALIDATE 1
#define FK_PLUGIN_KIND_PRIORITY 2
#define FK_PLUGIN_KIND_CONFLICT 3

/* Answers of fk_validate: accept, or a reason code from 1 to FK_PLUGIN_REASON_MAX. Any other
 * value is a bad answer, which the host treats as a rejection. */
#define FK_PLUGIN_ACCEPT 0
#define FK_PLUGIN_REASON_MAX 65535

/* Answers of fk_resolve_conflict. Any other value keeps the current holder. */
#define FK_PLUGIN_KEEP_CURRENT 0
#define FK_PLUGIN_CHALLENGER 1

/* The first 8 bytes of every record. */
typedef struct fk_plugin_header {
    uint8_t version;  /* FK_PLUGIN_RECORD_VERSION */
    uint8_t kind;     /* FK_PLUGIN_KIND_* */
    uint16_t reserved;
    uint32_t length;  /* bytes of the variable part after the fixed fields */
} fk_plugin_header;

/* A write to validate. `data` holds the key (key_len bytes) then the payload. A mark of
 * (0, 0) means the resource had none before this write. */
typedef struct fk_plugin_validate {
    fk_plugin_header header;
    uint64_t token_generation;
    uint64_t token_holder;
    uint64_t mark_generation;
    uint64_t mark_holder;
    uint32_t key_len;
    uint32_t payload_len;
    uint8_t data[];
} fk_plugin_validate;

/* A candidate for election priority; `descriptor` (header.length bytes) is what the host
 * configured for that node, for example "zone=a". */
typedef struct fk_plugin_priority {
    fk_plugin_header header;
    uint64_t node;
    uint8_t descriptor[];
} fk_plugin_priority;

/* Two tokens of one generation from different holders; `key` is header.length bytes. */
typedef struct fk_plugin_conflict {
    fk_plugin_header header;
    uint64_t current_generation;
    uint64_t current_holder;
    uint64_t challenger_generation;
    uint64_t challenger_holder;
    uint8_t key[];
} fk_plugin_conflict;

_Static_assert(offsetof(fk_plugin_validate, key_len) == 40, "ABI v1 layout");
_Static_assert(offsetof(fk_plugin_validate, data) == 48, "ABI v1 layout");
_Static_assert(offsetof(fk_plugin_priority, descriptor) == 16, "ABI v1 layout");
_Static_assert(offsetof(fk_plugin_conflict, key) == 40, "ABI v1 layout");

#define FK_PLUGIN_EXPORT(name) __attribute__((export_name(name)))

/* The input buffer and the three exports every plugin has. `capacity` is the largest record
 * the plugin accepts; a larger write is rejected by the host without calling the plugin. */
#define FK_PLUGIN_INPUT(capacity)                                                               \
    static uint8_t fk_plugin_input_buffer[capacity] __attribute__((aligned(8)));               \
    FK_PLUGIN_EXPORT("fk_abi_version") int32_t fk_plugin_abi_version(void) {                   \
        return FK_PLUGIN_ABI_VERSION;                                                           \
    }                                                                                           \
    FK_PLUGIN_EXPORT("fk_input") int32_t fk_plugin_input(void) {                               \
        return (int32_t)(uintptr_t)fk_plugin_input_buffer;                                      \
    }                                                                                           \
    FK_PLUGIN_EXPORT("fk_input_capacity") int32_t fk_plugin_input_capacity(void) {             \
        return (int32_t)(capacity);                                                             \
    }                                                                                           \
    static inline const void *fk_plugin_record(void) { return fk_plugin_input_buffer; }

/* fk_validate: `record` is the write; return FK_PLUGIN_ACCEPT or a reason code. */
#define FK_VALIDATE                                                                             \
    static int32_t fk_plugin_validate_impl(const fk_plugin_validate *record, int32_t len);     \
    FK_PLUGIN_EXPORT("fk_validate") int32_t fk_plugin_validate_entry(int32_t len) {            \
        return fk_plugin_validate_impl((const fk_plugin_validate *)fk_plugin_record(), len);    \
    }                                                                                           \
    static int32_t fk_plugin_validate_impl(const fk_plugin_validate *record, int32_t len)

/* fk_election_priority: higher wins an election between equally up-to-date candidates. */
#define FK_ELECTION_PRIORITY                                                                    \
    static int64_t fk_plugin_priority_impl(const fk_plugin_priority *record, int32_t len);     \
    FK_PLUGIN_EXPORT("fk_election_priority") int64_t fk_plugin_priority_entry(int32_t len) {   \
        return fk_plugin_priority_impl((const fk_plugin_priority *)fk_plugin_record(), len);   \
    }                                                                                           \
    static int64_t fk_plugin_priority_impl(const fk_plugin_priority *record, int32_t len)

/* fk_resolve_conflict: FK_PLUGIN_KEEP_CURRENT or FK_PLUGIN_CHALLENGER. */
#define FK_RESOLVE_CONFLICT                                                                     \
    static int32_t fk_plugin_conflict_impl(const fk_plugin_conflict *record, int32_t len);     \
    FK_PLUGIN_EXPORT("fk_resolve_conflict") int32_t fk_plugin_conflict_entry(int32_t len) {    \
        return fk_plugin_conflict_impl((const fk_plugin_conflict *)fk_plugin_record(), len);   \
    }                                                                                           \
    static int32_t fk_plugin_conflict_impl(const fk_plugin_conflict *record, int32_t len)

#ifdef FK_PLUGIN_WITH_LOG
/* Logs `len` bytes of UTF-8 at `text` through the host (at debug level; at most 1 KiB). */
__attribute__((import_module("fencekit"), import_name("log"))) void fk_log(const char *text, int32_t len);
#endif

/* memcmp without a libc. */
static inline int fk_plugin_starts_with(const uint8_t *bytes, uint32_t len, const char *prefix) {
    uint32_t i = 0;
    for (; prefix[i] != '\0'; i++) {
        if (i >= len || bytes[i] != (uint8_t)prefix[i]) return 0;
    }
    return 1;
}

#endif /* FENCEKIT_PLUGIN_H */
