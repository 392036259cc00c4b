//! # synor-host-wasmtime
//!
//! The wasmtime side of synor and the `synor` program's library: the benchmarks that compare
//! synor with its peers in one run.
//!
//! | module | what |
//! |---|---|
//! | [`bench`](mod@bench) | `synor bench ...`: measurements against peers, reported as ratios |
//! | [`block`] | block execution: declared access sets drained by the worker pool, equal to sequential execution |
//! | [`corpus`] | contract sets: a directory of `.wasm` files, its upgrade pairs, or the embedded set |
//! | [`engine`] | [`engine::WasmtimeEngine`]: the warm (Winch) and hot (Cranelift) tiers, with an artifact cache |
//! | [`run`] | `synor run`: one call on a chosen tier, printed identically on every tier |
//! | [`workload`] | deployments of the project's contracts and Zipf-skewed call sequences |
//! | [`tiered`] | [`tiered::TieredExecutor`]: the tier manager, with background tier-up |

#![warn(missing_docs)]

pub mod bench;
pub mod block;
pub mod corpus;
pub mod engine;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod run;
pub mod tiered;
pub mod workload;
