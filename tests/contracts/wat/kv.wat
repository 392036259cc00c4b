;; A key/value contract for the node's tests: writes, removals, range scans in both directions,
;; and calls to other contracts. Input layouts:
;;   set            [key length u8][key][value]
;;   del            [key]
;;   scan, rscan    [prefix]        returns [key length u8][key]... ascending / descending
;;   set_then_fail  [key length u8][key][value]   writes, then aborts
;;   call           [address 32][entry length u8][entry][input]
;;                  returns [result i64][the callee's return data]
;;   set_and_scan   [key length u8][key][value]   writes, then scans everything: sees its write
;;   make           [code 32][entry length u8][entry][input]   instantiates a contract of `code`,
;;                  then, unless the entry is empty, calls it on the new contract
;;                  returns [address 32], then as `call` if it called
;;   make_then_fail as `make`, then aborts
(module
  (import "synor" "input_len" (func $input_len (result i32)))
  (import "synor" "input_read" (func $input_read (param i32 i32 i32)))
  (import "synor" "return_data" (func $return (param i32 i32)))
  (import "synor" "storage_write" (func $write (param i32 i32 i32 i32)))
  (import "synor" "storage_remove" (func $remove (param i32 i32)))
  (import "synor" "storage_next" (func $next (param i32 i32 i32 i32 i32 i32) (result i64)))
  (import "synor" "storage_prev" (func $prev (param i32 i32 i32 i32 i32 i32) (result i64)))
  (import "synor" "call" (func $call (param i32 i32 i32 i32 i32 i32) (result i64)))
  (import "synor" "call_result" (func $call_result (param i32 i32 i32)))
  (import "synor" "abort" (func $abort (param i32 i32)))
  (import "synor" "instantiate" (func $instantiate (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0: input; 16384: `after` key; 20480: scan output entry; 32768: result; 65000: gas limit
  (data (i32.const 65000) "\00\e1\f5\05\00\00\00\00")
  (data (i32.const 65100) "failed on purpose")
  (data (i32.const 65200) "no such code")

  (func $read_input (result i32)
    (local $n i32)
    (local.set $n (call $input_len))
    (call $input_read (i32.const 0) (i32.const 0) (local.get $n))
    (local.get $n))

  (func $set (param $n i32)
    (local $klen i32)
    (local.set $klen (i32.load8_u (i32.const 0)))
    (call $write (i32.const 1) (local.get $klen)
      (i32.add (i32.const 1) (local.get $klen))
      (i32.sub (local.get $n) (i32.add (i32.const 1) (local.get $klen)))))

  ;; Scans keys starting with memory[0..plen], ascending unless $down; returns the keys.
  (func $scan (param $plen i32) (param $down i32)
    (local $alen i32) (local $r i64) (local $klen i32) (local $out i32)
    (local.set $alen (i32.const -1))
    (local.set $out (i32.const 32768))
    (block $done
      (loop $step
        (if (local.get $down)
          (then (local.set $r (call $prev (i32.const 0) (local.get $plen) (i32.const 16384)
            (local.get $alen) (i32.const 20480) (i32.const 4096))))
          (else (local.set $r (call $next (i32.const 0) (local.get $plen) (i32.const 16384)
            (local.get $alen) (i32.const 20480) (i32.const 4096)))))
        (br_if $done (i64.lt_s (local.get $r) (i64.const 0)))
        (local.set $klen (i32.load (i32.const 20480)))
        (memory.copy (i32.const 16384) (i32.const 20484) (local.get $klen))
        (local.set $alen (local.get $klen))
        (i32.store8 (local.get $out) (local.get $klen))
        (memory.copy (i32.add (local.get $out) (i32.const 1)) (i32.const 20484) (local.get $klen))
        (local.set $out (i32.add (local.get $out) (i32.add (local.get $klen) (i32.const 1))))
        (br $step)))
    (call $return (i32.const 32768) (i32.sub (local.get $out) (i32.const 32768))))

  (func (export "set") (call $set (call $read_input)))
  (func (export "del") (call $remove (i32.const 0) (call $read_input)))
  (func (export "scan") (call $scan (call $read_input) (i32.const 0)))
  (func (export "rscan") (call $scan (call $read_input) (i32.const 1)))
  (func (export "set_then_fail")
    (call $set (call $read_input))
    (call $abort (i32.const 65100) (i32.const 17)))
  (func (export "set_and_scan")
    (call $set (call $read_input))
    (call $scan (i32.const 0) (i32.const 0)))
  ;; Calls the contract at memory[0..32] as the input of length $n lays out (`call`); writes
  ;; [result i64][return data] at $out and returns its length.
  (func $call_at (param $n i32) (param $out i32) (result i32)
    (local $elen i32) (local $r i64) (local $len i32)
    (local.set $elen (i32.load8_u (i32.const 32)))
    (local.set $r (call $call (i32.const 0) (i32.const 33) (local.get $elen)
      (i32.add (i32.const 33) (local.get $elen))
      (i32.sub (local.get $n) (i32.add (i32.const 33) (local.get $elen)))
      (i32.const 65000)))
    (i64.store (local.get $out) (local.get $r))
    (local.set $len (select (i32.wrap_i64 (local.get $r)) (i32.const 0)
      (i64.ge_s (local.get $r) (i64.const 0))))
    (call $call_result (i32.add (local.get $out) (i32.const 8)) (i32.const 0) (local.get $len))
    (i32.add (i32.const 8) (local.get $len)))
  (func (export "call")
    (call $return (i32.const 32768) (call $call_at (call $read_input) (i32.const 32768))))
  ;; Instantiates the code at memory[0..32], its address replacing the code there.
  (func $make
    (local $n i32) (local $len i32)
    (local.set $n (call $read_input))
    (if (i32.ne (call $instantiate (i32.const 0) (i32.const 0)) (i32.const 0))
      (then (call $abort (i32.const 65200) (i32.const 12))))
    (memory.copy (i32.const 32768) (i32.const 0) (i32.const 32))
    (if (i32.load8_u (i32.const 32))
      (then (local.set $len (call $call_at (local.get $n) (i32.const 32800)))))
    (call $return (i32.const 32768) (i32.add (i32.const 32) (local.get $len))))
  (func (export "make") (call $make))
  (func (export "make_then_fail")
    (call $make)
    (call $abort (i32.const 65100) (i32.const 17))))
