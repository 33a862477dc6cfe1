;; max_payload: rejects a write whose payload is longer than 256 bytes (reason 1).
(module
  (memory (export "memory") 1)
  (global $input i32 (i32.const 4096))
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (global.get $input))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param $len i32) (result i32)
    ;; The payload's length is the u32 at offset 44 of the record.
    (if (result i32)
      (i32.gt_u (i32.load offset=44 (global.get $input)) (i32.const 256))
      (then (i32.const 1))
      (else (i32.const 0)))))
