;; deny_prefix: rejects writes to resources whose key starts with "readonly/" (reason 2).
(module
  (memory (export "memory") 1)
  (global $input i32 (i32.const 4096))
  (data (i32.const 0) "readonly/")
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (global.get $input))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param $len i32) (result i32)
    (local $i i32)
    ;; The key's length is the u32 at offset 40; the key starts at offset 48.
    (if (i32.lt_u (i32.load offset=40 (global.get $input)) (i32.const 9))
      (then (return (i32.const 0))))
    (block $differs
      (loop $next
        (br_if $differs
          (i32.ne
            (i32.load8_u (local.get $i))
            (i32.load8_u offset=48 (i32.add (global.get $input) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $next (i32.lt_u (local.get $i) (i32.const 9))))
      (return (i32.const 2)))
    (i32.const 0)))
