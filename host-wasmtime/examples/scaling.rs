//! Throughput of independent token transfers on 1 and 2 threads, without the block scheduler:
//! whether the engine itself scales.
use std::sync::Arc;
use std::time::Instant;

use synor_core::instrument::Limits;
use synor_core::tier::Tier;
use synor_host_wasmtime::block::{self, BlockState, Mode, Transaction};
use synor_host_wasmtime::engine::engines;
use synor_host_wasmtime::tiered::{DEFAULT_CACHE_BYTES, Mode as TierMode, TieredExecutor};

fn main() {
    let (files, _) = synor_host_wasmtime::corpus::embedded();
    let token = files.iter().find(|f| f.name == "token_v1.wasm").unwrap();
    let d = synor_host_wasmtime::workload::deploy(&[("t".into(), token.bytes.clone())], 1).unwrap();
    let exec = TieredExecutor::new(
        engines(&Limits::default(), None).unwrap(),
        TierMode::Static(Tier::Hot),
        DEFAULT_CACHE_BYTES,
    );
    let (genesis, txs) = block::transfers(&d, 0, 10000, 20000, 1);
    let half = txs.len() / 2;
    let a: Arc<[Transaction]> = txs[..half].to_vec().into();
    let b: Arc<[Transaction]> = txs[half..].to_vec().into();
    let run = |t: &Arc<[Transaction]>| {
        let s = Arc::new(BlockState::new(genesis.snapshot()));
        block::execute_block(&exec, &d, &s, t, Mode::Sequential).unwrap();
    };
    run(&a);
    for _ in 0..3 {
        let t = Instant::now();
        run(&a);
        run(&b);
        let one = t.elapsed().as_secs_f64();
        let t = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| run(&a));
            run(&b);
        });
        let two = t.elapsed().as_secs_f64();
        println!(
            "1 thread {:.0} tps, 2 threads {:.0} tps, ratio {:.2}",
            txs.len() as f64 / one,
            txs.len() as f64 / two,
            one / two
        );
    }
    // The same transactions as one block, declared mode on 2 threads.
    let all: Arc<[Transaction]> = txs.clone().into();
    for _ in 0..3 {
        let s = Arc::new(BlockState::new(genesis.snapshot()));
        let t = Instant::now();
        block::execute_block(&exec, &d, &s, &all, Mode::Sequential).unwrap();
        let one = t.elapsed().as_secs_f64();
        let s = Arc::new(BlockState::new(genesis.snapshot()));
        let t = Instant::now();
        block::execute_block(&exec, &d, &s, &all, Mode::Declared { threads: 2 }).unwrap();
        let two = t.elapsed().as_secs_f64();
        println!(
            "block: sequential {:.0} tps, declared on 2 threads {:.0} tps, ratio {:.2}",
            txs.len() as f64 / one,
            txs.len() as f64 / two,
            one / two
        );
    }
}
