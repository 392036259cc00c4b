//! `synor`: the command-line program.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use synor_cli::bench;
use synor_cli::corpus;
use synor_core::digest::CodeId;
use synor_core::host::Level;
use synor_core::store::{RecordKind, StoreConfig};
use synor_host_std::open_store;

/// mimalloc rather than glibc's allocator: block execution allocates on one worker thread and
/// frees on another, which made glibc's arena locks park threads (a third of the context
/// switches of a parallel block) and its heap trimming take the address-space lock that
/// wasmtime's memory resets need (optimistic blocks on 2 threads: 1.1-1.2x sequential with
/// mimalloc, 0.96-0.99x with glibc). Built without transparent huge pages: zeroing a fresh
/// 2 MiB page on first touch doubled the latency of a contract's first call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where the demonstration writes its report, in the current directory.
const DEMO_REPORT: &str = "synor-report";

/// Creates the report's directory before a run, so that a run does not end in an error it
/// could have said at once.
fn report_dir_ready(dir: Option<&Path>) -> Result<(), Error> {
    match dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot write the report in {}: {e}", dir.display()).into()),
        None => Ok(()),
    }
}

/// Writes `report`, filled by `fill`, to `dir` when asked to; says where on stderr.
fn write_report(
    dir: Option<&Path>,
    title: &str,
    fill: impl FnOnce(&mut synor_cli::report::Report) -> Result<(), Error>,
) -> Result<(), Error> {
    let Some(dir) = dir else { return Ok(()) };
    let mut report = synor_cli::report::Report::new(title);
    fill(&mut report)?;
    let page = report.write(dir)?;
    eprintln!("synor: report written to {}", page.display());
    Ok(())
}

#[derive(Parser)]
#[command(
    name = "synor",
    version,
    about = "Fast, compact, deterministic WebAssembly smart-contract execution",
    long_about = "Fast, compact, deterministic WebAssembly smart-contract execution.\n\n\
                  Without a command, runs a demonstration: a node in a temporary directory \
                  executes and commits blocks of the contracts embedded in the program, in \
                  parallel and sequentially, restarts, and prints a summary."
)]
struct Cli {
    /// Data directory of the node (its code store, state and artifacts).
    #[arg(long, global = true, default_value = "synor-data")]
    data: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate, instrument and store a contract in the node; prints its code id.
    Deploy {
        /// The module (.wasm).
        file: PathBuf,
    },
    /// Instantiate a contract of deployed code; prints its address.
    Instantiate {
        /// The code id (64 hex digits) `deploy` printed.
        code: String,
        /// The creating account (64 hex digits; default: all zeros).
        #[arg(long)]
        sender: Option<String>,
    },
    /// Call a contract in a block of one transaction, committed; prints the receipt as JSON.
    Call(CallArgs),
    /// Call a contract on the committed state and keep nothing; prints the receipt as JSON.
    Query(CallArgs),
    /// Execute and commit a block of transactions given as JSON; prints the outcome as JSON.
    Block {
        /// A JSON array of transactions: `{"contract": ADDRESS, "entry": NAME, "sender": HEX,
        /// "input": HEX, "gas": N, "access": {"reads": [HEX], "writes": [HEX]}}` (sender,
        /// input, gas and access optional; access keys are full state keys, the contract's
        /// address first).
        file: PathBuf,
        /// How to execute it (every mode gives the same result).
        #[arg(long, value_enum, default_value_t = ModeArg::Optimistic)]
        mode: ModeArg,
        /// Worker threads of the parallel modes (default: every core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Read the committed state.
    #[command(subcommand)]
    State(StateCommand),
    /// CosmWasm contracts: instantiate, execute, query, native tokens (JSON in and out).
    #[command(subcommand)]
    Cw(CwCommand),
    /// Run the demonstration (what `synor` without a command does).
    Demo {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Where to write the report with charts (DIR/index.html).
        #[arg(long, value_name = "DIR", default_value = DEMO_REPORT)]
        report: PathBuf,
    },
    /// Work with the code store in the data directory.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Validate, instrument and call one export of a module once; prints results, return
    /// data, gas used, trap and a hash of memory (identical on every tier).
    Run(RunArgs),
    /// Measure synor against its peers (ratios, one run).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum CwCommand {
    /// Deploy a CosmWasm contract and instantiate it in a block; prints its address and
    /// response.
    Instantiate {
        /// The contract (.wasm).
        file: PathBuf,
        #[command(flatten)]
        call: CwCallArgs,
    },
    /// Execute a contract in a block of one transaction; prints its response.
    Execute {
        /// The contract's address (bech32 or 64 hex digits).
        address: String,
        #[command(flatten)]
        call: CwCallArgs,
    },
    /// Query a contract on the committed state; prints its answer.
    Query {
        /// The contract's address (bech32 or 64 hex digits).
        address: String,
        /// The query message (JSON).
        #[arg(long)]
        msg: String,
        /// Gas limit.
        #[arg(long, default_value_t = synor_cli::cw::DEFAULT_GAS)]
        gas: u64,
    },
    /// Send native tokens from the sender to an account, in a block.
    Send {
        /// The receiver (an address, 64 hex digits, or a name).
        to: String,
        /// The tokens, e.g. `100earth,5moon`.
        #[arg(long)]
        funds: String,
        /// The sender (an address, 64 hex digits, or a name; default: all zeros).
        #[arg(long)]
        sender: Option<String>,
    },
    /// Credit native tokens to accounts: only in the node's first block.
    Genesis {
        /// The accounts (addresses, 64 hex digits, or names).
        accounts: Vec<String>,
        /// The tokens each gets, e.g. `1000earth`.
        #[arg(long)]
        funds: String,
    },
    /// The address of an account (a name, 64 hex digits, or an address).
    Address {
        /// The account.
        account: String,
    },
    /// A native balance.
    Balance {
        /// The account (an address, 64 hex digits, or a name).
        account: String,
        /// The denomination.
        denom: String,
    },
}

#[derive(clap::Args)]
struct CwCallArgs {
    /// The message (JSON).
    #[arg(long)]
    msg: String,
    /// The sender (an address, 64 hex digits, or a name; default: all zeros).
    #[arg(long)]
    sender: Option<String>,
    /// Native tokens sent along, e.g. `100earth,5moon`.
    #[arg(long, default_value = "")]
    funds: String,
    /// Gas limit.
    #[arg(long, default_value_t = synor_cli::cw::DEFAULT_GAS)]
    gas: u64,
}

#[derive(clap::Args)]
struct CallArgs {
    /// The contract's address (64 hex digits).
    address: String,
    /// The export to call.
    entry: String,
    /// The input, in hex.
    #[arg(long, default_value = "")]
    input: String,
    /// The calling account (64 hex digits; default: all zeros).
    #[arg(long)]
    sender: Option<String>,
    /// Gas limit.
    #[arg(long, default_value_t = 100_000_000)]
    gas: u64,
}

#[derive(Subcommand)]
enum StateCommand {
    /// The value of a contract's key (printed in hex, with its version).
    Get {
        /// The contract's address.
        address: String,
        /// The key, in hex, as the contract names it.
        key: String,
    },
    /// A contract's keys in order (or from the last, with `--reverse`), from a prefix.
    Scan {
        /// The contract's address.
        address: String,
        /// Only keys starting with this (hex).
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Descending order.
        #[arg(long)]
        reverse: bool,
    },
    /// The contracts of the node.
    Contracts,
}

#[derive(Clone, Copy, ValueEnum)]
enum TierArg {
    Cold,
    Warm,
    Hot,
    Auto,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The module (.wasm): an ABI v1 contract or a module that imports nothing.
    file: PathBuf,
    /// The export to call.
    entry: String,
    /// Arguments: integers for i32/i64 parameters (decimal or 0x hex), decimals for floats.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    /// The tier to run on; `auto` lets the tier manager choose (cold, or an artifact cached
    /// by an earlier run).
    #[arg(long, value_enum, default_value = "auto")]
    tier: TierArg,
    /// The call's input (what `input_read` returns).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Gas limit.
    #[arg(long, default_value_t = synor_cli::run::DEFAULT_GAS)]
    gas: u64,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LevelArg {
    None,
    Fast,
    Balanced,
    Maximum,
}

impl From<LevelArg> for Level {
    fn from(l: LevelArg) -> Level {
        match l {
            LevelArg::None => Level::None,
            LevelArg::Fast => Level::Fast,
            LevelArg::Balanced => Level::Balanced,
            LevelArg::Maximum => Level::Maximum,
        }
    }
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Store a contract (or a data blob); prints its id.
    Put {
        /// The file to store.
        file: PathBuf,
        /// Store it as a new version of this record (a delta when that is smallest).
        #[arg(long, value_name = "ID")]
        upgrade_of: Option<String>,
        /// Store it as a data blob (code-as-storage).
        #[arg(long)]
        blob: bool,
        /// Compression effort.
        #[arg(long, value_enum, default_value = "balanced")]
        level: LevelArg,
    },
    /// Write a record's bytes to a file (checked against its id).
    Get {
        /// The record's id (64 hex digits).
        id: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Remove one pin of a record.
    Rm {
        /// The record's id.
        id: String,
    },
    /// Statistics of the store, or of one record.
    Stat {
        /// A record's id.
        id: Option<String>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the live records.
    Ls,
    /// Recount every reference and check every object; `--deep` also decodes every record.
    Verify {
        /// Decode every live record.
        #[arg(long)]
        deep: bool,
    },
    /// Remove objects nothing refers to.
    Gc,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Code store: synor against zstd -19 per file and zstd --patch-from for upgrades.
    Store(BenchStoreArgs),
    /// Tiered execution against wasmi, Winch and Cranelift alone, on a Zipf-skewed workload.
    Tiers(BenchTiersArgs),
    /// Parallel block execution against sequential, on peer-to-peer token transfers.
    Sched(BenchSchedArgs),
    /// A node (redb state, hot-state cache, commit) against in-memory block execution on the
    /// same blocks; restart, cache against LRU, journal checkpoints.
    Node(BenchNodeArgs),
    /// Block latency with speculation (pending transactions pre-executed between blocks)
    /// against without, over shares pre-executed and invalidated.
    Spec(BenchSpecArgs),
    /// CosmWasm end to end: cw20-base transfer blocks through the node and through
    /// cosmwasm-vm (in builds with the `peer-cosmwasm` feature).
    E2e(BenchE2eArgs),
}

#[derive(clap::Args)]
struct BenchE2eArgs {
    /// The cw20-base build to run (default: the one embedded, 2.0.0).
    #[arg(long)]
    contract: Option<PathBuf>,
    /// Workload seed.
    #[arg(long, default_value_t = synor_cli::bench::e2e::SEED)]
    seed: u64,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Also write a report with charts to DIR/index.html (one self-contained page).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BenchSpecArgs {
    /// Token transfers per block.
    #[arg(long, default_value_t = 1_000)]
    transfers: usize,
    /// Compute-heavy calls (SHA-256 hash chains) per block.
    #[arg(long, default_value_t = 500)]
    compute: usize,
    /// SHA-256 rounds of a compute call (drawn between half and all of it).
    #[arg(long, default_value_t = 400)]
    rounds: u32,
    /// Blocks per cell of the grid (even: each node goes first equally often).
    #[arg(long, default_value_t = 10)]
    blocks: usize,
    /// Worker threads, on both nodes.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Workload seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct BenchSchedArgs {
    /// Account counts.
    #[arg(long, num_args = 1.., default_values_t = [2u64, 10, 100, 1000, 10000])]
    accounts: Vec<u64>,
    /// Block sizes.
    #[arg(long, num_args = 1.., default_values_t = [1000usize, 10000])]
    block: Vec<usize>,
    /// Thread counts of the parallel modes (default: 1, 2 and every core, when more).
    #[arg(long, num_args = 1..)]
    threads: Vec<usize>,
    /// Repetitions of each cell (the medians count).
    #[arg(long, default_value_t = 11)]
    reps: usize,
    /// Also write a report with charts to DIR/index.html (one self-contained page).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct BenchNodeArgs {
    /// Token accounts.
    #[arg(long, default_value_t = 10_000)]
    accounts: u64,
    /// Token transfers per block.
    #[arg(long, default_value_t = 10_000)]
    transfers: usize,
    /// Compute transactions (hash chains) per block.
    #[arg(long, default_value_t = 50)]
    compute: usize,
    /// Registry documents updated (new blobs) per block.
    #[arg(long, default_value_t = 20)]
    blob_writes: usize,
    /// Registry documents read (from blobs) per block.
    #[arg(long, default_value_t = 80)]
    blob_reads: usize,
    /// Contract-to-contract transactions per block.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Worker threads of optimistic execution.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Untimed blocks before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed blocks.
    #[arg(long, default_value_t = 6)]
    blocks: usize,
    /// Workload seed.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Also write a report with charts to DIR/index.html (one self-contained page).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct BenchTiersArgs {
    /// Directory of compute programs for `metering_overhead` (every .wasm there); the
    /// embedded programs when absent.
    #[arg(long)]
    programs: Option<PathBuf>,
    /// Calls in the workload.
    #[arg(long, default_value_t = 3000)]
    calls: usize,
    /// Deployments of each embedded contract.
    #[arg(long, default_value_t = 4)]
    copies: usize,
    /// Zipf exponent of call frequency.
    #[arg(long, default_value_t = 1.2)]
    skew: f64,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Pairs of instrumented and uninstrumented runs of each program (the median ratio
    /// counts).
    #[arg(long, default_value_t = 11)]
    program_reps: usize,
    /// Size given to a program's `setup` when it takes one (as the corpus programs do).
    #[arg(long, default_value_t = 100)]
    program_size: i64,
    /// Also write a report with charts to DIR/index.html (one self-contained page).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Default)]
struct BenchStoreArgs {
    /// Directory of .wasm files (searched recursively); the embedded contracts when absent.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Upgrade pairs: tab-separated `kind old new` lines, paths relative to the corpus.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Also write a report with charts to DIR/index.html (one self-contained page).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Compression level of the store.
    #[arg(long, value_enum)]
    level: Option<LevelArg>,
    /// Repetitions of each timed measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Write one line per file (name, size, encoding, stored bytes, peers) to this TSV file.
    #[arg(long, value_name = "FILE")]
    files_out: Option<PathBuf>,
    /// Ablation: no trained dictionaries.
    #[arg(long, hide = true)]
    no_dictionary: bool,
    /// Ablation: dictionary size in bytes.
    #[arg(long, hide = true)]
    dictionary_size: Option<usize>,
    /// Ablation: at most this many reference records.
    #[arg(long, hide = true)]
    max_refs: Option<usize>,
    /// Ablation: longest reference chain.
    #[arg(long, hide = true)]
    max_depth: Option<u32>,
    /// Ablation: no search for similar records.
    #[arg(long, hide = true)]
    no_similar: bool,
}

fn parse_id(s: &str) -> Result<CodeId, Error> {
    CodeId::from_hex(s).ok_or_else(|| format!("`{s}` is not a record id (64 hex digits)").into())
}

fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Full => "full",
        RecordKind::Delta => "delta",
        RecordKind::Chunked => "chunked",
    }
}

/// The code store in `data`, which must exist: only `store put` creates one.
fn existing_store(
    data: &Path,
) -> Result<synor_core::CodeStore<synor_host_std::RedbKv, synor_host_std::ZstdCompressor>, Error> {
    if !data.join(synor_host_std::STORE_FILE).is_file() {
        return Err(format!(
            "no code store in {}: nothing has been stored there (`synor store put` creates it)",
            data.display()
        )
        .into());
    }
    Ok(open_store(data, StoreConfig::default())?)
}

fn store_command(data: &Path, command: StoreCommand) -> Result<(), Error> {
    match command {
        StoreCommand::Put {
            file,
            upgrade_of,
            blob,
            level,
        } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let config = StoreConfig {
                level: level.into(),
                ..StoreConfig::default()
            };
            let mut store = open_store(data, config)?;
            let previous = upgrade_of.as_deref().map(parse_id).transpose()?;
            let report = if blob {
                store.put_blob(&bytes, previous.as_ref())?
            } else {
                match previous {
                    Some(p) => store.put_upgrade(&p, &bytes)?,
                    None => store.put(&bytes)?,
                }
            };
            println!("{}", report.id);
            eprintln!(
                "{} bytes stored as {} in {} bytes{}{}",
                report.raw_bytes,
                kind_name(report.kind),
                report.stored_bytes,
                if report.refs.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", against {}",
                        report
                            .refs
                            .iter()
                            .map(|r| r.short().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                if report.created {
                    ""
                } else {
                    " (already stored: pinned again)"
                }
            );
        }
        StoreCommand::Get { id, output } => {
            let store = existing_store(data)?;
            let bytes = store.get(&parse_id(&id)?)?;
            std::fs::write(&output, bytes).map_err(|e| format!("{}: {e}", output.display()))?;
        }
        StoreCommand::Rm { id } => {
            let mut store = existing_store(data)?;
            store.delete(&parse_id(&id)?)?;
        }
        StoreCommand::Stat { id, json } => {
            let store = existing_store(data)?;
            match id {
                Some(id) => {
                    let s = store.record_stats(&parse_id(&id)?)?;
                    let value = serde_json::json!({
                        "id": s.id.to_string(),
                        "kind": kind_name(s.kind),
                        "blob": s.blob,
                        "raw_bytes": s.raw_bytes,
                        "stored_bytes": s.stored_bytes,
                        "pins": s.pins,
                        "dependents": s.dependents,
                        "refs": s.refs.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                        "dictionary": s.dictionary,
                        "depth": s.depth,
                    });
                    print_value(&value, json);
                }
                None => {
                    let s = store.stats()?;
                    let kind = |k: &synor_core::store::KindStats| {
                        serde_json::json!({
                            "records": k.records,
                            "raw_bytes": k.raw_bytes,
                            "stored_bytes": k.stored_bytes,
                        })
                    };
                    let value = serde_json::json!({
                        "live_records": s.live_records,
                        "live_raw_bytes": s.live_raw_bytes,
                        "retained_records": s.retained_records,
                        "stored_bytes": s.total_bytes,
                        "full": kind(&s.full),
                        "delta": kind(&s.delta),
                        "chunked": kind(&s.chunked),
                        "chunks": s.chunks,
                        "chunk_bytes": s.chunk_bytes,
                        "dictionaries": s.dictionaries,
                        "dictionary_bytes": s.dictionary_bytes,
                        "index_bytes": s.index_bytes,
                    });
                    print_value(&value, json);
                }
            }
        }
        StoreCommand::Ls => {
            let store = existing_store(data)?;
            for id in store.ids() {
                let s = store.record_stats(&id)?;
                println!(
                    "{id} {:>9} {:>9} {}",
                    s.raw_bytes,
                    s.stored_bytes,
                    kind_name(s.kind)
                );
            }
        }
        StoreCommand::Verify { deep } => {
            let store = existing_store(data)?;
            let report = store.verify(deep)?;
            for p in &report.problems {
                println!("{p}");
            }
            eprintln!(
                "{} records, {} chunks, {} dictionaries: {} problems",
                report.records,
                report.chunks,
                report.dictionaries,
                report.problems.len()
            );
            if !report.problems.is_empty() {
                return Err("the store is inconsistent".into());
            }
        }
        StoreCommand::Gc => {
            let mut store = existing_store(data)?;
            let r = store.gc()?;
            eprintln!(
                "removed {} records, {} chunks, {} dictionaries ({} bytes)",
                r.records, r.chunks, r.dictionaries, r.bytes
            );
        }
    }
    Ok(())
}

fn print_value(value: &serde_json::Value, json: bool) {
    if json {
        println!("{value}");
    } else if let Some(map) = value.as_object() {
        for (k, v) in map {
            println!("{k:<18} {v}");
        }
    }
}

fn run_command(data: &Path, args: RunArgs) -> Result<(), Error> {
    use synor_core::tier::Tier;
    let wasm = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let input = match &args.input {
        Some(p) => std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        None => Vec::new(),
    };
    let tier = match args.tier {
        TierArg::Cold => Some(Tier::Cold),
        TierArg::Warm => Some(Tier::Warm),
        TierArg::Hot => Some(Tier::Hot),
        TierArg::Auto => None,
    };
    // A run only reads the data directory: without one, it compiles without an artifact cache
    // rather than creating it.
    let cache = if data.is_dir() {
        artifact_cache(data)
    } else {
        eprintln!(
            "synor: no data directory {}: no artifact cache, compiling every time",
            data.display()
        );
        None
    };
    let engines =
        synor_host_wasmtime::engine::engines(&synor_core::instrument::Limits::default(), cache)?;
    let request = synor_cli::run::RunRequest {
        wasm: &wasm,
        entry: &args.entry,
        args: &args.args,
        input,
        gas: args.gas,
    };
    let (report, ran) = synor_cli::run::run(&request, tier, engines)?;
    eprintln!("synor: ran on the {ran} tier");
    print_value(&report, args.json);
    Ok(())
}

/// The artifact cache in the data directory, when it can be opened: artifacts in
/// `<data>/artifacts`, authenticated under the node's secret in `<data>/artifacts.key` (kept
/// apart, so that writing the artifact directory does not give the key to it). A rejected
/// artifact is recompiled, with a warning.
fn artifact_cache(data: &Path) -> Option<synor_host_wasmtime::engine::TrustedArtifacts> {
    use synor_host_std::{ArtifactSecret, FsArtifactCache};
    let opened = ArtifactSecret::load_or_create(data.join("artifacts.key")).and_then(|secret| {
        // SAFETY: the secret is this node's: `load_or_create` made it from fresh random bytes
        // with mode 0600 and refuses a file another user owns or could read or replace; it
        // stays in this process. The cache goes only to the engines, which store only their
        // own compiled output under the keys they derive.
        unsafe { FsArtifactCache::open(data.join("artifacts"), &secret, Default::default()) }
    });
    match opened {
        Ok(c) => Some(synor_host_wasmtime::engine::TrustedArtifacts::fs(
            std::sync::Arc::new(c.on_rejection(|path, why| {
                eprintln!(
                    "synor: warning: {}: {why}; deleted, compiling again",
                    path.display()
                );
            })),
        )),
        Err(e) => {
            eprintln!("synor: no artifact cache ({e}); compiling every time");
            None
        }
    }
}

fn bench_sched(args: BenchSchedArgs) -> Result<(), Error> {
    report_dir_ready(args.report.as_deref())?;
    let (contracts, _) = corpus::embedded();
    let token = contracts
        .iter()
        .find(|f| f.name == "token_v1.wasm")
        .ok_or("the token contract is not embedded")?;
    let threads = if args.threads.is_empty() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut t = vec![1, 2];
        if cores > 2 {
            t.push(cores);
        }
        t
    } else {
        args.threads
    };
    let options = bench::sched::Options {
        accounts: args.accounts,
        blocks: args.block,
        threads,
        reps: args.reps,
        progress: true,
    };
    let report = bench::sched::run(&token.bytes, &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", bench::sched::table(&report));
    }
    write_report(args.report.as_deref(), "synor bench sched", |out| {
        bench::sched::report(&report, out)
    })
}

fn bench_node(args: BenchNodeArgs) -> Result<(), Error> {
    report_dir_ready(args.report.as_deref())?;
    let (contracts, _) = corpus::embedded();
    let options = bench::node::Options {
        accounts: args.accounts,
        transfers: args.transfers,
        compute: args.compute,
        blob_writes: args.blob_writes,
        blob_reads: args.blob_reads,
        calls: args.calls,
        threads: args.threads,
        warmup: args.warmup,
        blocks: args.blocks,
        seed: args.seed,
        ..Default::default()
    };
    let report = bench::node::run(&contracts, &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", bench::node::table(&report));
    }
    write_report(args.report.as_deref(), "synor bench node", |out| {
        bench::node::report(&report, out)
    })
}

fn bench_spec(args: BenchSpecArgs) -> Result<(), Error> {
    let (contracts, _) = corpus::embedded();
    let options = bench::spec::Options {
        transfers: args.transfers,
        compute: args.compute,
        rounds: args.rounds,
        blocks: args.blocks,
        threads: args.threads,
        seed: args.seed,
        progress: !args.json,
    };
    let report = bench::spec::run(&contracts, &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", bench::spec::table(&report));
    }
    Ok(())
}

fn bench_tiers(args: BenchTiersArgs) -> Result<(), Error> {
    report_dir_ready(args.report.as_deref())?;
    let programs = match &args.programs {
        Some(dir) => corpus::load_dir(dir)?,
        None => corpus::embedded_programs(),
    };
    let (contracts, _) = corpus::embedded();
    let options = bench::tiers::Options {
        calls: args.calls,
        copies: args.copies.max(1),
        skew: args.skew,
        seed: args.seed,
        programs: programs.into_iter().map(|f| (f.name, f.bytes)).collect(),
        program_reps: args.program_reps,
        program_size: args.program_size,
        progress: true,
        policy: Default::default(),
    };
    let files: Vec<(String, Vec<u8>)> = contracts.into_iter().map(|f| (f.name, f.bytes)).collect();
    let report = bench::tiers::run(&files, &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", bench::tiers::table(&report));
    }
    write_report(args.report.as_deref(), "synor bench tiers", |out| {
        bench::tiers::report(&report, out)
    })
}

fn bench_store(args: BenchStoreArgs) -> Result<(), Error> {
    report_dir_ready(args.report.as_deref())?;
    let (name, files, pairs) = match &args.corpus {
        Some(dir) => {
            let files = corpus::load_dir(dir)?;
            let pairs = match &args.pairs {
                Some(p) => corpus::load_pairs(p, &files)?,
                None => corpus::Pairs::new(),
            };
            (dir.display().to_string(), files, pairs)
        }
        None => {
            if args.pairs.is_some() {
                return Err("--pairs needs --corpus".into());
            }
            let (files, pairs) = corpus::embedded();
            ("embedded contracts".to_string(), files, pairs)
        }
    };
    let mut config = StoreConfig::default();
    config.dictionary.enabled &= !args.no_dictionary;
    config.dictionary.size = args.dictionary_size.unwrap_or(config.dictionary.size);
    config.max_refs = args.max_refs.unwrap_or(config.max_refs);
    config.max_depth = args.max_depth.unwrap_or(config.max_depth);
    config.find_similar &= !args.no_similar;
    let options = bench::store::Options {
        level: args.level.map_or(Level::Maximum, Level::from),
        reps: args.reps.max(1),
        progress: true,
        data: None,
        config,
        files_out: args.files_out,
    };
    let report = bench::store::run(&name, &files, &pairs, &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", bench::store::table(&report));
    }
    write_report(args.report.as_deref(), "synor bench store", |out| {
        bench::store::report(&report, out)
    })
}

fn bench_e2e(args: BenchE2eArgs) -> Result<(), Error> {
    use synor_cli::bench::{e2e, e2e_synor};
    report_dir_ready(args.report.as_deref())?;
    let wasm = match &args.contract {
        Some(f) => std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?,
        None => synor_cli::demo::CW20_BASE.to_vec(),
    };
    let blocks = e2e::workload(args.seed);
    let v = e2e_synor::compare(&wasm, &blocks, !args.json)?;
    if args.json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if v.get("tps_cosmwasm_vm").is_some() {
        write_report(args.report.as_deref(), "synor bench e2e", |out| {
            out.e2e(&v)?;
            Ok(())
        })?;
    } else if args.report.is_some() {
        return Err("the report compares with cosmwasm-vm, which this build lacks (--features peer-cosmwasm)".into());
    }
    Ok(())
}

fn hex_bytes(s: &str, what: &str) -> Result<Vec<u8>, Error> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return Err(format!("{what}: an odd number of hex digits").into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| format!("{what}: `{}` is not hex", &s[i..i + 2]).into())
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn account_of(s: Option<&str>) -> Result<[u8; 32], Error> {
    let Some(s) = s else { return Ok([0; 32]) };
    hex_bytes(s, "sender")?
        .try_into()
        .map_err(|_| "sender: an account is 32 bytes (64 hex digits)".into())
}

fn address_of(s: &str) -> Result<synor_core::block::Address, Error> {
    CodeId::from_hex(s).ok_or_else(|| format!("`{s}` is not an address (64 hex digits)").into())
}

/// The node in `data`; read-only commands need it to exist.
fn open_node(data: &Path, create: bool) -> Result<synor_host_std::Node, Error> {
    if !create && !data.join(synor_host_std::STORE_FILE).is_file() {
        return Err(format!(
            "no node in {}: nothing has been deployed there (`synor deploy` creates it)",
            data.display()
        )
        .into());
    }
    let warn: synor_host_wasmtime::OnRejection = std::sync::Arc::new(|path, why| {
        eprintln!(
            "synor: warning: {}: {why}; deleted, compiling again",
            path.display()
        );
    });
    let config = synor_host_std::NodeConfig::default();
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let engines = synor_host_wasmtime::node_engines(data, &config, Some(warn))?;
    Ok(synor_host_std::Node::open(data, config, engines)?)
}

fn receipt_json(r: &synor_core::block::Receipt) -> serde_json::Value {
    serde_json::json!({
        "gas_used": r.gas_used,
        "trap": r.trap,
        "return_data": hex(&r.return_data),
        "events": r.events.iter().map(|e| serde_json::json!({
            "topic": String::from_utf8_lossy(&e.topic),
            "data": hex(&e.data),
        })).collect::<Vec<_>>(),
        "created": r.created.iter().map(|c| serde_json::json!({
            "address": c.address.to_string(),
            "code": c.code.to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// A transaction of a block file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TxJson {
    contract: String,
    entry: String,
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    input: String,
    #[serde(default = "default_gas")]
    gas: u64,
    #[serde(default)]
    access: Option<AccessJson>,
}

/// The keys a transaction of a block file declares (hex, full state keys).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessJson {
    #[serde(default)]
    reads: Vec<String>,
    #[serde(default)]
    writes: Vec<String>,
}

/// A block's execution mode on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModeArg {
    /// One transaction after the other.
    Sequential,
    /// By declared access sets (a transaction declaring nothing runs alone).
    Declared,
    /// Optimistically (Block-STM), validated by versions.
    Optimistic,
}

impl ModeArg {
    fn mode(self, threads: Option<usize>) -> synor_core::block::Mode {
        let threads =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        match self {
            ModeArg::Sequential => synor_core::block::Mode::Sequential,
            ModeArg::Declared => synor_core::block::Mode::Declared { threads },
            ModeArg::Optimistic => synor_core::block::Mode::Optimistic { threads },
        }
    }
}

fn default_gas() -> u64 {
    100_000_000
}

fn cw_command(data: &Path, command: CwCommand) -> Result<(), Error> {
    use synor_cli::cw;
    let chain = synor_core::cosmwasm::tx::CwChain::default();
    let sender = |s: &Option<String>| match s {
        Some(s) => cw::account(&chain, s),
        None => Ok([0; 32]),
    };
    let value = match command {
        CwCommand::Instantiate { file, call } => {
            let wasm = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut node = open_node(data, true)?;
            let code = node.deploy(&wasm)?;
            let tx = cw::transaction(
                code,
                "instantiate",
                sender(&call.sender)?,
                cw::message(&call.msg)?,
                cw::coins(&call.funds)?,
                call.gas,
            )?;
            let mut value = cw::run(&mut node, tx)?;
            value["address"] = value["created"][0].clone();
            value["code"] = code.to_string().into();
            value["code_id"] = node.code_number(&code)?.into();
            value
        }
        CwCommand::Execute { address, call } => {
            let mut node = open_node(data, false)?;
            let tx = cw::transaction(
                cw::contract(&chain, &address)?,
                "execute",
                sender(&call.sender)?,
                cw::message(&call.msg)?,
                cw::coins(&call.funds)?,
                call.gas,
            )?;
            cw::run(&mut node, tx)?
        }
        CwCommand::Query { address, msg, gas } => {
            let mut node = open_node(data, false)?;
            cw::query(
                &mut node,
                &cw::contract(&chain, &address)?,
                &cw::message(&msg)?,
                gas,
            )?
        }
        CwCommand::Send {
            to,
            funds,
            sender: from,
        } => {
            let mut node = open_node(data, true)?;
            let to = chain.address(&cw::account(&chain, &to)?);
            let tx = cw::bank(
                sender(&from)?,
                "send",
                &serde_json::json!({"to": to}),
                cw::coins(&funds)?,
                cw::DEFAULT_GAS,
            )?;
            cw::run(&mut node, tx)?
        }
        CwCommand::Genesis { accounts, funds } => {
            let mut node = open_node(data, true)?;
            let accounts = accounts
                .iter()
                .map(|a| Ok(chain.address(&cw::account(&chain, a)?)))
                .collect::<Result<Vec<_>, Error>>()?;
            let msg = serde_json::json!({"accounts": accounts});
            cw::run(
                &mut node,
                cw::bank(
                    [0; 32],
                    "genesis",
                    &msg,
                    cw::coins(&funds)?,
                    cw::DEFAULT_GAS,
                )?,
            )?
        }
        CwCommand::Address { account } => {
            serde_json::json!({"address": chain.address(&cw::account(&chain, &account)?)})
        }
        CwCommand::Balance { account, denom } => {
            let node = open_node(data, false)?;
            let key =
                synor_core::cosmwasm::tx::balance_key(&denom, &cw::account(&chain, &account)?);
            let value = node.get(&key)?.map(|(v, _)| v);
            let amount = synor_core::cosmwasm::tx::balance_value(value.as_deref())?;
            serde_json::json!({"denom": denom, "amount": amount.to_string()})
        }
    };
    println!("{value}");
    Ok(())
}

fn node_command(data: &Path, command: Command) -> Result<(), Error> {
    match command {
        Command::Cw(c) => cw_command(data, c)?,
        Command::Deploy { file } => {
            let wasm = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut node = open_node(data, true)?;
            println!("{}", node.deploy(&wasm)?);
        }
        Command::Instantiate { code, sender } => {
            let mut node = open_node(data, false)?;
            let address = node.instantiate(&parse_id(&code)?, account_of(sender.as_deref())?)?;
            println!("{address}");
        }
        Command::Call(args) => {
            let mut node = open_node(data, false)?;
            let tx = synor_core::block::Transaction {
                contract: address_of(&args.address)?,
                entry: args.entry,
                caller: account_of(args.sender.as_deref())?,
                input: hex_bytes(&args.input, "input")?,
                gas: args.gas,
                access: None,
            };
            let out = node.execute_block([tx])?;
            let mut value = receipt_json(&out.receipts[0]);
            value["height"] = out.height.into();
            println!("{value}");
        }
        Command::Query(args) => {
            let mut node = open_node(data, false)?;
            let receipt = node.query(
                &address_of(&args.address)?,
                &args.entry,
                account_of(args.sender.as_deref())?,
                hex_bytes(&args.input, "input")?,
                args.gas,
            )?;
            println!("{}", receipt_json(&receipt));
        }
        Command::Block {
            file,
            mode,
            threads,
        } => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let parsed: Vec<TxJson> = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a block of transactions: {e}", file.display()))?;
            let txs = parsed
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    let at = |e: Error| -> Error { format!("transaction {i}: {e}").into() };
                    let keys = |keys: &[String], what: &str| -> Result<Vec<Vec<u8>>, Error> {
                        keys.iter().map(|k| hex_bytes(k, what)).collect()
                    };
                    let access = match &t.access {
                        None => None,
                        Some(a) => Some(synor_core::sched::AccessSet {
                            reads: keys(&a.reads, "read key").map_err(at)?,
                            writes: keys(&a.writes, "written key").map_err(at)?,
                        }),
                    };
                    Ok(synor_core::block::Transaction {
                        contract: address_of(&t.contract).map_err(at)?,
                        entry: t.entry,
                        caller: account_of(t.sender.as_deref()).map_err(at)?,
                        input: hex_bytes(&t.input, "input").map_err(at)?,
                        gas: t.gas,
                        access,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let mut node = open_node(data, false)?;
            let mode = mode.mode(threads);
            node.set_mode(mode);
            let out = node.execute_block(txs)?;
            let value = serde_json::json!({
                "height": out.height,
                "mode": format!("{mode:?}"),
                "executions": out.executions,
                "receipts_digest": out.receipts_digest.to_string(),
                "state_diff_digest": out.diff_digest.to_string(),
                "receipts": out.receipts.iter().map(receipt_json).collect::<Vec<_>>(),
            });
            println!("{value}");
        }
        Command::State(StateCommand::Get { address, key }) => {
            let node = open_node(data, false)?;
            let mut full = address_of(&address)?.as_bytes().to_vec();
            full.extend(hex_bytes(&key, "key")?);
            match node.get(&full)? {
                Some((value, v)) => println!(
                    "{} (written by block {}, transaction {})",
                    hex(&value),
                    v.block,
                    v.tx
                ),
                None => return Err("no such key".into()),
            }
        }
        Command::State(StateCommand::Scan {
            address,
            prefix,
            limit,
            reverse,
        }) => {
            let node = open_node(data, false)?;
            let address = address_of(&address)?;
            let mut full = address.as_bytes().to_vec();
            full.extend(hex_bytes(&prefix, "prefix")?);
            let mut range = synor_core::state::Range::prefix(&full);
            if reverse {
                range = range.descending();
            }
            for (k, v, _) in node.scan(&range, limit)? {
                println!("{} {}", hex(&k[32..]), hex(&v));
            }
        }
        Command::State(StateCommand::Contracts) => {
            let node = open_node(data, false)?;
            for c in node.contracts()? {
                println!("{} code {} at height {}", c.address, c.code, c.height);
            }
        }
        _ => unreachable!("not a node command"),
    }
    Ok(())
}

fn demo(json: bool, report: &Path) -> Result<(), Error> {
    report_dir_ready(Some(report))?;
    let dir = tempfile::tempdir()?;
    let (files, _) = corpus::embedded();
    let summary = synor_cli::demo::run(dir.path(), &files, &Default::default())?;
    let mut page = synor_cli::report::Report::new("synor: the demonstration");
    synor_cli::demo::report(&summary, &mut page)?;
    let written = page.write(report)?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
        eprintln!("synor: report written to {}", written.display());
    } else {
        print!("{}", synor_cli::demo::text(&summary));
        println!(
            "\n  report with charts                      {}",
            written.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Store(c)) => store_command(&cli.data, c),
        Some(Command::Run(args)) => run_command(&cli.data, args),
        Some(Command::Bench(BenchCommand::Store(args))) => bench_store(args),
        Some(Command::Bench(BenchCommand::Tiers(args))) => bench_tiers(args),
        Some(Command::Bench(BenchCommand::Sched(args))) => bench_sched(args),
        Some(Command::Bench(BenchCommand::Node(args))) => bench_node(args),
        Some(Command::Bench(BenchCommand::Spec(args))) => bench_spec(args),
        Some(Command::Bench(BenchCommand::E2e(args))) => bench_e2e(args),
        Some(Command::Demo { json, report }) => demo(json, &report),
        None => demo(false, Path::new(DEMO_REPORT)),
        Some(command) => node_command(&cli.data, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synor: {e}");
            ExitCode::FAILURE
        }
    }
}
