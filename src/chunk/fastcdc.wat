;; FastCDC 2020 (normalized chunking) cut-point search, bit-exact with the
;; Rust crate `fastcdc`, module v2020. See test/chunk/fixtures/README.md for
;; the algorithm this follows step by step.
;;
;; Why WebAssembly: the gear hash is a wrapping 64-bit value. JS numbers only
;; give 32-bit integer arithmetic, and BigInt is two orders of magnitude too
;; slow, whereas wasm i64 maps onto single machine instructions.
;;
;; Memory layout (JS reads the addresses from the exported globals):
;;   GEAR      u64[256] at 0       written by JS (seed already XORed in)
;;   GEAR_LS   u64[256] at 2048    GEAR << 1, also written by JS
;;   cut ends  u32[max_cuts]       absolute memory addresses, output of find_cuts
;;   data                          the chunker's buffer, up to the end of memory
(module
  (memory (export "memory") 1)

  (global $cuts_ptr (export "cuts_ptr") i32 (i32.const 4096))
  (global $max_cuts (export "max_cuts") i32 (i32.const 1024))
  (global $data_ptr (export "data_ptr") i32 (i32.const 8192))

  ;; Chunking parameters, set once by `configure`.
  (global $min_size (mut i32) (i32.const 0))
  (global $avg_size (mut i32) (i32.const 0))
  (global $max_size (mut i32) (i32.const 0))
  (global $mask_s (mut i64) (i64.const 0))
  (global $mask_l (mut i64) (i64.const 0))

  (func (export "configure")
    (param $min i32) (param $avg i32) (param $max i32)
    (param $mask_s i64) (param $mask_l i64)
    (global.set $min_size (local.get $min))
    (global.set $avg_size (local.get $avg))
    (global.set $max_size (local.get $max))
    (global.set $mask_s (local.get $mask_s))
    (global.set $mask_l (local.get $mask_l)))

  ;; Cuts chunks off [$pos, $end) one after the other and writes the end
  ;; address of each at cuts_ptr. Returns how many it wrote. It stops when
  ;; no bytes remain, when max_cuts is reached, or, unless $eof, when fewer
  ;; than max_size bytes remain: a cut looks at up to max_size bytes (and
  ;; shrinks `center` when fewer than avg_size remain), so cutting earlier
  ;; could differ from what the whole stream gives.
  (func (export "find_cuts") (param $pos i32) (param $end i32) (param $eof i32) (result i32)
    (local $count i32) (local $remaining i32) (local $n i32) (local $center i32)
    (local $min i32) (local $avg i32) (local $max i32)
    (local $mask_s i64) (local $mask_l i64)
    (local.set $min (global.get $min_size))
    (local.set $avg (global.get $avg_size))
    (local.set $max (global.get $max_size))
    (local.set $mask_s (global.get $mask_s))
    (local.set $mask_l (global.get $mask_l))
    (block $stop
      (loop $next_chunk
        (local.set $remaining (i32.sub (local.get $end) (local.get $pos)))
        (br_if $stop (i32.eqz (local.get $remaining)))
        (br_if $stop (i32.and (i32.eqz (local.get $eof))
                              (i32.lt_u (local.get $remaining) (local.get $max))))
        (br_if $stop (i32.eq (local.get $count) (global.get $max_cuts)))
        (if (i32.le_u (local.get $remaining) (local.get $min))
          (then (local.set $pos (local.get $end)))
          (else
            (local.set $n (local.get $remaining))
            (local.set $center (local.get $avg))
            (if (i32.gt_u (local.get $n) (local.get $max))
              (then (local.set $n (local.get $max)))
              (else (if (i32.lt_u (local.get $n) (local.get $center))
                (then (local.set $center (local.get $n))))))
            (local.set $pos
              (call $cut (local.get $pos) (local.get $n) (local.get $center)
                         (local.get $min) (local.get $mask_s) (local.get $mask_l)))))
        (i32.store
          (i32.add (global.get $cuts_ptr) (i32.shl (local.get $count) (i32.const 2)))
          (local.get $pos))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (br $next_chunk)))
    (local.get $count))

  ;; One cut over $n > min bytes at $start; returns the chunk's end address.
  ;; The loop index i of the README is kept as the address a = start + 2*i,
  ;; so each phase scans [a, start + 2*floor(limit/2)).
  (func $cut
    (param $start i32) (param $n i32) (param $center i32) (param $min i32)
    (param $mask_s i64) (param $mask_l i64) (result i32)
    (local $a i32) (local $stop i32) (local $h i64)
    (local.set $a (i32.add (local.get $start) (i32.and (local.get $min) (i32.const -2))))
    (local.set $stop (i32.add (local.get $start) (i32.and (local.get $center) (i32.const -2))))
    (if (i32.lt_u (local.get $a) (local.get $stop))
      (then
        (call $scan (local.get $a) (local.get $stop) (i64.const 0) (local.get $mask_s))
        (local.set $h)
        (local.set $a)
        (if (i32.lt_u (local.get $a) (local.get $stop))
          (then (return (local.get $a))))))
    (local.set $stop (i32.add (local.get $start) (i32.and (local.get $n) (i32.const -2))))
    (if (i32.lt_u (local.get $a) (local.get $stop))
      (then
        (call $scan (local.get $a) (local.get $stop) (local.get $h) (local.get $mask_l))
        (drop)
        (local.set $a)
        (if (i32.lt_u (local.get $a) (local.get $stop))
          (then (return (local.get $a))))))
    (i32.add (local.get $start) (local.get $n)))

  ;; Runs the gear hash over the byte pairs of [$a, $stop) ($stop - $a is
  ;; even and positive), starting from hash $h. Returns the cut address and
  ;; the hash: the cut address is $stop when no cut point was found.
  ;; Each pair is the README's two steps: the first byte goes through GEAR_LS
  ;; and is tested against mask << 1, which equals shifting h by one more
  ;; bit; on a hit the chunk ends *before* that byte, as the crate does.
  ;; The body is unrolled to four pairs per iteration so the loop overhead
  ;; stays off the critical path (the hash is one serial dependency chain);
  ;; the leftover 0..3 pairs run first, one pair per iteration.
  (func $scan (param $a i32) (param $stop i32) (param $h i64) (param $mask i64) (result i32 i64)
    (local $mask_ls i64) (local $unrolled_start i32)
    (local.set $mask_ls (i64.shl (local.get $mask) (i64.const 1)))
    (local.set $unrolled_start
      (i32.add (local.get $a)
               (i32.and (i32.sub (local.get $stop) (local.get $a)) (i32.const 7))))
    (if (i32.lt_u (local.get $a) (local.get $unrolled_start))
      (then
        (loop $pairs
          (local.set $h (i64.add (i64.shl (local.get $h) (i64.const 2))
            (i64.load offset=2048 (i32.shl (i32.load8_u (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask_ls)))
            (then (return (local.get $a) (local.get $h))))
          (local.set $h (i64.add (local.get $h)
            (i64.load (i32.shl (i32.load8_u offset=1 (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask)))
            (then (return (i32.add (local.get $a) (i32.const 1)) (local.get $h))))
          (local.set $a (i32.add (local.get $a) (i32.const 2)))
          (br_if $pairs (i32.lt_u (local.get $a) (local.get $unrolled_start))))))
    (if (i32.lt_u (local.get $a) (local.get $stop))
      (then
        (loop $quads
          (local.set $h (i64.add (i64.shl (local.get $h) (i64.const 2))
            (i64.load offset=2048 (i32.shl (i32.load8_u (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask_ls)))
            (then (return (local.get $a) (local.get $h))))
          (local.set $h (i64.add (local.get $h)
            (i64.load (i32.shl (i32.load8_u offset=1 (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask)))
            (then (return (i32.add (local.get $a) (i32.const 1)) (local.get $h))))

          (local.set $h (i64.add (i64.shl (local.get $h) (i64.const 2))
            (i64.load offset=2048 (i32.shl (i32.load8_u offset=2 (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask_ls)))
            (then (return (i32.add (local.get $a) (i32.const 2)) (local.get $h))))
          (local.set $h (i64.add (local.get $h)
            (i64.load (i32.shl (i32.load8_u offset=3 (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask)))
            (then (return (i32.add (local.get $a) (i32.const 3)) (local.get $h))))

          (local.set $h (i64.add (i64.shl (local.get $h) (i64.const 2))
            (i64.load offset=2048 (i32.shl (i32.load8_u offset=4 (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask_ls)))
            (then (return (i32.add (local.get $a) (i32.const 4)) (local.get $h))))
          (local.set $h (i64.add (local.get $h)
            (i64.load (i32.shl (i32.load8_u offset=5 (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask)))
            (then (return (i32.add (local.get $a) (i32.const 5)) (local.get $h))))

          (local.set $h (i64.add (i64.shl (local.get $h) (i64.const 2))
            (i64.load offset=2048 (i32.shl (i32.load8_u offset=6 (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask_ls)))
            (then (return (i32.add (local.get $a) (i32.const 6)) (local.get $h))))
          (local.set $h (i64.add (local.get $h)
            (i64.load (i32.shl (i32.load8_u offset=7 (local.get $a)) (i32.const 3)))))
          (if (i64.eqz (i64.and (local.get $h) (local.get $mask)))
            (then (return (i32.add (local.get $a) (i32.const 7)) (local.get $h))))

          (local.set $a (i32.add (local.get $a) (i32.const 8)))
          (br_if $quads (i32.lt_u (local.get $a) (local.get $stop))))))
    (local.get $stop) (local.get $h))
)
