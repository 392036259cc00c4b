//! # synor-host-wasmtime
//!
//! The wasmtime tiers of synor: [`engine::WasmtimeEngine`] compiles instrumented modules with
//! Winch (warm) or Cranelift (hot), keeps their artifacts in an authenticated cache, and runs
//! calls through the core's ABI, with the same results and gas as the cold tier (wasmi, in
//! `synor-host-std`). [`open_node`] opens a [`Node`] on them: the entry point of a node that
//! embeds synor (see its example).
//!
//! | item | what |
//! |---|---|
//! | [`open_node`] | a [`Node`] on a data directory, on wasmi, Winch and Cranelift |
//! | [`node_engines`] | the three tiers of a node, with the artifact cache of its directory |
//! | [`engine`] | [`engine::WasmtimeEngine`]: the warm (Winch) and hot (Cranelift) tiers, with an artifact cache |

#![warn(missing_docs)]

pub mod engine;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

use std::path::Path;
use std::sync::Arc;

use synor_core::tier::Engine;
use synor_host_std::{ArtifactSecret, FsArtifactCache, Node, NodeConfig, NodeError};

/// A hook told of each artifact the cache rejected (tampered, swapped, foreign): its file and
/// why. The artifact is deleted and its module compiled again.
pub type OnRejection = Arc<dyn Fn(&Path, &str) + Send + Sync>;

/// The three tiers of a node whose data directory is `dir`: wasmi (cold), Winch (warm) and
/// Cranelift (hot), the compiled tiers keeping their artifacts in `<dir>/artifacts`,
/// authenticated under the node's secret `<dir>/artifacts.key` (created on first use, mode
/// 0600). Without a usable cache (e.g. a read-only directory) the tiers compile every time.
///
/// # Errors
/// An engine cannot be built for this machine.
pub fn node_engines(
    dir: &Path,
    config: &NodeConfig,
    on_rejection: Option<OnRejection>,
) -> Result<[Arc<dyn Engine>; 3], NodeError> {
    let opened = ArtifactSecret::load_or_create(dir.join("artifacts.key")).and_then(|secret| {
        // SAFETY: the secret is this node's: `load_or_create` made it from fresh random bytes
        // with mode 0600 and refuses a file another user owns or could read or replace; it
        // stays in this process. The cache goes only to the engines, which store only their
        // own compiled output under the keys they derive.
        unsafe { FsArtifactCache::open(dir.join("artifacts"), &secret, Default::default()) }
    });
    let cache = opened.ok().map(|c| {
        let c = match on_rejection {
            Some(hook) => c.on_rejection(move |path, why| hook(path, &why.to_string())),
            None => c,
        };
        engine::TrustedArtifacts::fs(Arc::new(c))
    });
    engine::engines(&config.limits, cache).map_err(NodeError::Engine)
}

/// Opens the node in `dir` (created if missing) on wasmtime's tiers ([`node_engines`]).
///
/// # Examples
/// ```
/// use synor_core::block::Transaction;
/// use synor_host_std::NodeConfig;
///
/// // A contract that counts its calls in its state, and returns the count.
/// let wasm = wat::parse_str(r#"(module
///     (import "synor" "storage_read" (func $read (param i32 i32 i32 i32) (result i64)))
///     (import "synor" "storage_write" (func $write (param i32 i32 i32 i32)))
///     (import "synor" "return_data" (func $ret (param i32 i32)))
///     (memory (export "memory") 1)
///     (data (i32.const 0) "n")
///     (func (export "bump")
///         (drop (call $read (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8)))
///         (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1)))
///         (call $write (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8))
///         (call $ret (i32.const 8) (i32.const 8))))"#)?;
/// let dir = tempfile::tempdir()?;
/// let mut node = synor_host_wasmtime::open_node(dir.path(), NodeConfig::default())?;
/// let code = node.deploy(&wasm)?;
/// let counter = node.instantiate(&code, [1; 32])?;
/// let bump = Transaction {
///     contract: counter,
///     entry: "bump".into(),
///     caller: [2; 32],
///     input: Vec::new(),
///     gas: 1_000_000,
///     access: None,
/// };
/// let block = node.execute_block([bump.clone(), bump])?;
/// assert_eq!(block.height, 1);
/// assert_eq!(block.receipts[1].return_data, 2u64.to_le_bytes());
/// let digest = node.state_digest()?;
/// drop(node);
///
/// // Reopened, the node is at the same height with the same state.
/// let node = synor_host_wasmtime::open_node(dir.path(), NodeConfig::default())?;
/// assert_eq!((node.height(), node.state_digest()?), (1, digest));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// See [`Node::open`] and [`node_engines`].
pub fn open_node(dir: &Path, config: NodeConfig) -> Result<Node, NodeError> {
    std::fs::create_dir_all(dir).map_err(|e| NodeError::Fault(e.to_string()))?;
    let engines = node_engines(dir, &config, None)?;
    Node::open(dir, config, engines)
}
