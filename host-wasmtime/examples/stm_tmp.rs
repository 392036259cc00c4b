#![allow(missing_docs)]
use std::time::Instant;
use synor_core::sched::optimistic::{Executed, Optimistic, Read, Version};
use synor_host_std::pool;
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let n = 10_000usize;
    let key = |a: u64| { let mut k = vec![7u8; 36]; k.extend_from_slice(&a.to_le_bytes()); k.extend_from_slice(&[0; 24]); k };
    let mut s = 1u64;
    let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s % 10_000 };
    let sets: Vec<[Vec<u8>; 2]> = (0..n).map(|_| [key(next()), key(next())]).collect();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..10 {
            let stm: Optimistic<Vec<u8>, Option<Vec<u8>>, ()> = Optimistic::new(n);
            let execute = |_: usize, v: Version| {
                let mut reads = stm.reads(v.tx);
                let mut writes = Vec::new();
                for key in &sets[v.tx as usize] {
                    if stm.read(&mut reads, key) == Read::Blocked { break; }
                    writes.push((key.clone(), Some(vec![0; 8])));
                }
                Executed { reads, writes, output: () }
            };
            pool::drain_optimistic(&stm, threads, &execute, &|_| {});
            std::hint::black_box(stm.finish());
        }
        println!("{threads} threads: {:.0} ns/tx", t.elapsed().as_nanos() as f64 / (10 * n) as f64);
    }
}
