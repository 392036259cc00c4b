//! # synor-host-wasmtime
//!
//! The wasmtime side of synor and the `synor` program's library: the benchmarks that compare
//! synor with its peers in one run.
//!
//! | module | what |
//! |---|---|
//! | [`bench`] | `synor bench ...`: measurements against peers, reported as ratios |
//! | [`corpus`] | contract sets: a directory of `.wasm` files, its upgrade pairs, or the embedded set |

#![warn(missing_docs)]

pub mod bench;
pub mod corpus;
