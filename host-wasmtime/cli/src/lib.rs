//! # synor-cli
//!
//! The library of the `synor` program: its benchmarks against synor's peers, the corpora
//! they run on, and the workloads they generate. Not a library for nodes: a node embeds
//! `synor-host-std` and `synor-host-wasmtime`.
//!
//! | module | what |
//! |---|---|
//! | [`bench`](mod@bench) | `synor bench ...`: measurements against peers, reported as ratios |
//! | [`demo`] | the demonstration `synor` runs without arguments |
//! | [`cw`] | `synor cw ...`: CosmWasm contracts on a node, JSON in and out |
//! | [`corpus`] | contract sets: a directory of `.wasm` files, its upgrade pairs, or the embedded set |
//! | [`report`] | `--report DIR`: one self-contained HTML page of a run's figures, with charts |
//! | [`run`] | `synor run`: one call on a chosen tier, printed identically on every tier |
//! | [`workload`] | deployments of the project's contracts and Zipf-skewed call sequences |

#![warn(missing_docs)]

pub mod bench;
pub mod corpus;
pub mod cw;
pub mod demo;
pub mod report;
pub mod run;
pub mod workload;
