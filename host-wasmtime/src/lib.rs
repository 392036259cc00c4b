//! # synor-host-wasmtime
//!
//! The wasmtime tiers of synor: [`engine::WasmtimeEngine`] compiles instrumented modules with
//! Winch (warm) or Cranelift (hot), keeps their artifacts in an authenticated cache, and runs
//! calls through the core's ABI, with the same results and gas as the cold tier (wasmi, in
//! `synor-host-std`). [`engine::engines`] gives the three tiers a node runs on.
//!
//! | module | what |
//! |---|---|
//! | [`engine`] | [`engine::WasmtimeEngine`]: the warm (Winch) and hot (Cranelift) tiers, with an artifact cache |

#![warn(missing_docs)]

pub mod engine;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
