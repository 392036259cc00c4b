//! Static checks of an uploaded CosmWasm module: those of cosmwasm-vm's `check_wasm`
//! (`packages/vm/src/compatibility.rs`, 3.0), plus the exact signature of every import.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use wasmparser::{
    CompositeInnerType, ExternalKind, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

use super::{CwImport, IMPORT_MODULE, INTERFACE_VERSION};
use crate::abi::Ty;

/// The features cosmwasm-vm's parser enables (`parsed_wasm.rs`): bulk memory, SIMD, threads,
/// exceptions, tail calls, memory64 and the rest are rejected.
const FEATURES: WasmFeatures = WasmFeatures::MUTABLE_GLOBAL
    .union(WasmFeatures::SATURATING_FLOAT_TO_INT)
    .union(WasmFeatures::SIGN_EXTENSION)
    .union(WasmFeatures::MULTI_VALUE)
    .union(WasmFeatures::FLOATS)
    .union(WasmFeatures::REFERENCE_TYPES);

/// The static limits of a module (cosmwasm-vm's `WasmLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckLimits {
    /// The most initial pages of the memory (its maximum must be unset).
    pub initial_memory_pages: u64,
    /// The largest maximum of the table (which must have one).
    pub table_elements: u64,
    /// The most imports.
    pub imports: usize,
    /// The most functions defined.
    pub functions: usize,
    /// The most parameters of any function type.
    pub function_params: usize,
    /// The most parameters of all defined functions together.
    pub total_function_params: usize,
    /// The most results of any function type.
    pub function_results: usize,
    /// The most locals one function declares.
    pub function_locals: usize,
    /// The most locals all functions declare together.
    pub total_function_locals: usize,
}

impl CheckLimits {
    /// cosmwasm-vm 3.0's defaults.
    pub const COSMWASM_VM: CheckLimits = CheckLimits {
        initial_memory_pages: 512,
        table_elements: 2500,
        imports: 100,
        functions: 20_000,
        function_params: 100,
        total_function_params: 10_000,
        function_results: 1,
        function_locals: 100,
        total_function_locals: 10_000,
    };
}

impl Default for CheckLimits {
    fn default() -> Self {
        Self::COSMWASM_VM
    }
}

/// An entry point a contract may export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    /// `instantiate(env, info, msg)`.
    Instantiate,
    /// `execute(env, info, msg)`.
    Execute,
    /// `query(env, msg)`.
    Query,
    /// `migrate(env, msg)`, or `migrate(env, msg, migrate_info)` (cosmwasm-std 2.2+).
    Migrate,
    /// `sudo(env, msg)`.
    Sudo,
    /// `reply(env, reply)`.
    Reply,
}

impl Entry {
    /// Every entry point.
    pub const ALL: [Entry; 6] = [
        Entry::Instantiate,
        Entry::Execute,
        Entry::Query,
        Entry::Migrate,
        Entry::Sudo,
        Entry::Reply,
    ];

    /// The export's name.
    pub fn name(self) -> &'static str {
        match self {
            Entry::Instantiate => "instantiate",
            Entry::Execute => "execute",
            Entry::Query => "query",
            Entry::Migrate => "migrate",
            Entry::Sudo => "sudo",
            Entry::Reply => "reply",
        }
    }
}

/// What the checks found out about a contract.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// The entry points it exports, each with its number of (region pointer) parameters, in
    /// [`Entry::ALL`] order.
    pub entries: Vec<(Entry, usize)>,
    /// The imports it uses, in import order.
    pub imports: Vec<CwImport>,
    /// The capabilities it requires (its exports `requires_*`, without the prefix), sorted.
    pub capabilities: Vec<String>,
    /// The version in its `cw_migrate_version` custom section, if any.
    pub migrate_version: Option<u64>,
    /// Whether it exports IBC entry points (`ibc_*`, `ibc2_*`), which this layer does not
    /// serve.
    pub ibc: bool,
}

impl Interface {
    /// Whether it exports `entry`.
    pub fn has(&self, entry: Entry) -> bool {
        self.entries.iter().any(|(e, _)| *e == entry)
    }

    /// The parameters of `entry`, if exported.
    pub fn params(&self, entry: Entry) -> Option<usize> {
        self.entries
            .iter()
            .find(|(e, _)| *e == entry)
            .map(|(_, n)| *n)
    }
}

/// Why a module was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckError {
    /// Not a valid module under cosmwasm-vm's feature set (the parser's or validator's
    /// message).
    Invalid(String),
    /// No `interface_version_*` export; `legacy` is a pre-0.14 marker it has instead
    /// (`cosmwasm_vm_version_*`), if any.
    NoInterfaceVersion {
        /// The legacy marker found.
        legacy: Option<String>,
    },
    /// More than one `interface_version_*` export.
    ManyInterfaceVersions,
    /// An `interface_version_*` other than [`INTERFACE_VERSION`].
    UnsupportedInterfaceVersion(String),
    /// A required export (`allocate`, `deallocate`) is missing.
    MissingExport(&'static str),
    /// A required export has the wrong signature.
    ExportSignature {
        /// The export.
        name: &'static str,
        /// The signature it must have.
        expected: &'static str,
    },
    /// An import that is not one of [`CwImport`] (`module.name`).
    UnknownImport(String),
    /// A known import with another signature than cosmwasm-vm gives it.
    ImportSignature {
        /// `env.name`.
        name: String,
        /// The signature it must have.
        expected: String,
        /// The module's.
        found: String,
    },
    /// An import that is not a function (`module.name`).
    NonFunctionImport(String),
    /// A static limit or shape rule (memory, table, counts) is broken.
    Limit(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Invalid(m) => write!(f, "invalid Wasm module: {m}"),
            CheckError::NoInterfaceVersion {
                legacy: Some(marker),
            } => write!(
                f,
                "{marker}: a CosmWasm {} contract (no interface_version_* marker export); only {INTERFACE_VERSION} (CosmWasm 1.0 and later) is supported",
                legacy_release(marker)
            ),
            CheckError::NoInterfaceVersion { legacy: None } => write!(
                f,
                "missing the marker export interface_version_*: not a CosmWasm contract, or one older than 0.8"
            ),
            CheckError::ManyInterfaceVersions => {
                f.write_str("more than one marker export interface_version_*")
            }
            CheckError::UnsupportedInterfaceVersion(v) => match interface_release(v) {
                Some(release) => write!(
                    f,
                    "{v}: CosmWasm {release} contracts are not supported; {INTERFACE_VERSION} (CosmWasm 1.0 and later) is"
                ),
                None => write!(
                    f,
                    "{v}: unknown interface version; {INTERFACE_VERSION} (CosmWasm 1.0 and later) is supported"
                ),
            },
            CheckError::MissingExport(name) => {
                write!(f, "missing the required export `{name}`")
            }
            CheckError::ExportSignature { name, expected } => {
                write!(f, "export `{name}` must be a function {expected}")
            }
            CheckError::UnknownImport(name) => write!(
                f,
                "unsupported import `{name}`: CosmWasm contracts may import only the functions of module `env` that cosmwasm-vm provides"
            ),
            CheckError::ImportSignature {
                name,
                expected,
                found,
            } => write!(
                f,
                "import `{name}` has signature {found}, expected {expected}"
            ),
            CheckError::NonFunctionImport(name) => {
                write!(f, "import `{name}` is not a function")
            }
            CheckError::Limit(m) => f.write_str(m),
        }
    }
}

impl core::error::Error for CheckError {}

/// The CosmWasm release of an `interface_version_*` marker.
fn interface_release(marker: &str) -> Option<&'static str> {
    Some(match marker {
        "interface_version_5" => "0.14",
        "interface_version_6" => "0.15",
        "interface_version_7" => "0.16",
        _ => return None,
    })
}

/// The CosmWasm releases of a `cosmwasm_vm_version_*` marker.
fn legacy_release(marker: &str) -> &'static str {
    match marker {
        "cosmwasm_vm_version_1" => "0.8",
        "cosmwasm_vm_version_2" => "0.9",
        "cosmwasm_vm_version_3" => "0.10",
        "cosmwasm_vm_version_4" => "0.11–0.13",
        _ => "pre-0.14",
    }
}

/// `(i32, i32) -> i64` and the like.
fn signature(params: &[ValType], results: &[ValType]) -> String {
    let list = |ts: &[ValType]| {
        ts.iter()
            .map(|t| format!("{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match results {
        [] => format!("({})", list(params)),
        _ => format!("({}) -> {}", list(params), list(results)),
    }
}

fn val(t: Ty) -> ValType {
    match t {
        Ty::I32 => ValType::I32,
        Ty::I64 => ValType::I64,
    }
}

/// [`check_with`] under cosmwasm-vm's default limits.
///
/// # Errors
/// The first rule the module breaks.
pub fn check(wasm: &[u8]) -> Result<Interface, CheckError> {
    check_with(wasm, &CheckLimits::COSMWASM_VM)
}

/// Checks `wasm` as cosmwasm-vm does at upload, under `limits`: a valid module under its
/// feature set; at most one table, with a maximum within the limit; exactly one memory,
/// with no maximum and few enough initial pages; exactly one `interface_version_*` export,
/// and it is [`INTERFACE_VERSION`]; exports `allocate: (i32) -> i32` and
/// `deallocate: (i32)`; at most `limits.imports` imports, each a function of module `env`
/// that is one of [`CwImport`] with its exact signature; function, parameter, result and
/// local counts within the limits; a numeric `cw_migrate_version` section if any.
///
/// # Errors
/// The first rule the module breaks, in cosmwasm-vm's order.
pub fn check_with(wasm: &[u8], limits: &CheckLimits) -> Result<Interface, CheckError> {
    let invalid = |e: wasmparser::BinaryReaderError| CheckError::Invalid(format!("{e}"));
    Validator::new_with_features(FEATURES)
        .validate_all(wasm)
        .map_err(invalid)?;
    let limit = |m: String| Err(CheckError::Limit(m));

    // One pass over the sections: what the rules below need.
    let mut types: Vec<(Vec<ValType>, Vec<ValType>)> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new(); // imported functions first, as indices go
    let mut imports = Vec::new();
    let mut tables = Vec::new();
    let mut memories = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let (mut defined, mut total_params) = (0usize, 0usize);
    let (mut max_locals, mut total_locals) = (0usize, 0usize);
    let mut migrate_version = None;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for ty in group.map_err(invalid)?.into_types() {
                        if let CompositeInnerType::Func(ft) = &ty.composite_type.inner {
                            types.push((ft.params().to_vec(), ft.results().to_vec()));
                        } else {
                            // Not reachable under FEATURES (no GC); kept as an empty slot so
                            // indices stay right.
                            types.push((Vec::new(), Vec::new()));
                        }
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    if let TypeRef::Func(t) = import.ty {
                        func_types.push(t);
                    }
                    imports.push((import.module.to_owned(), import.name.to_owned(), import.ty));
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader {
                    let t = t.map_err(invalid)?;
                    defined += 1;
                    total_params += types.get(t as usize).map_or(0, |(p, _)| p.len());
                    func_types.push(t);
                }
            }
            Payload::TableSection(reader) => {
                for t in reader {
                    tables.push(t.map_err(invalid)?.ty);
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader {
                    memories.push(m.map_err(invalid)?);
                }
            }
            Payload::ExportSection(reader) => {
                for e in reader {
                    let e = e.map_err(invalid)?;
                    exports.push((e.name.to_owned(), e.kind, e.index));
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut locals = 0usize;
                for l in body.get_locals_reader().map_err(invalid)? {
                    locals = locals.saturating_add(l.map_err(invalid)?.0 as usize);
                }
                max_locals = max_locals.max(locals);
                total_locals = total_locals.saturating_add(locals);
            }
            Payload::CustomSection(reader) if reader.name() == "cw_migrate_version" => {
                let text = core::str::from_utf8(reader.data())
                    .map_err(|_| CheckError::Invalid("cw_migrate_version is not UTF-8".into()))?;
                let v = text.parse::<u64>().map_err(|_| {
                    CheckError::Invalid(format!("cw_migrate_version {text:?} is not a number"))
                })?;
                migrate_version = Some(v);
            }
            _ => {}
        }
    }
    let func_type = |index: u32| {
        let t = *func_types.get(index as usize)?;
        types.get(t as usize)
    };

    // Tables and memories.
    match tables.as_slice() {
        [] => {}
        [t] => match t.maximum {
            None => return limit("the table must have a maximum size".into()),
            Some(max) if max > limits.table_elements => {
                return limit(format!(
                    "the table's maximum of {max} elements exceeds {}",
                    limits.table_elements
                ));
            }
            Some(_) => {}
        },
        _ => return limit("more than one table".into()),
    }
    let imported_memory = imports
        .iter()
        .any(|(_, _, ty)| matches!(ty, TypeRef::Memory(_)));
    match memories.as_slice() {
        [m] if !imported_memory => {
            if m.initial > limits.initial_memory_pages {
                return limit(format!(
                    "the memory's {} initial pages exceed {}",
                    m.initial, limits.initial_memory_pages
                ));
            }
            if m.maximum.is_some() {
                return limit("the memory's maximum must be unset (the host sets it)".into());
            }
        }
        _ => return limit("a contract must define exactly one memory".into()),
    }

    // The interface version.
    let function_exports = || {
        exports
            .iter()
            .filter(|(_, kind, _)| *kind == ExternalKind::Func)
    };
    let mut versions = function_exports().filter(|(n, ..)| n.starts_with("interface_version_"));
    match (versions.next(), versions.next()) {
        (None, _) => {
            let legacy = function_exports()
                .find(|(n, ..)| n.starts_with("cosmwasm_vm_version_"))
                .map(|(n, ..)| n.clone());
            return Err(CheckError::NoInterfaceVersion { legacy });
        }
        (Some(_), Some(_)) => return Err(CheckError::ManyInterfaceVersions),
        (Some((v, ..)), None) if v != INTERFACE_VERSION => {
            return Err(CheckError::UnsupportedInterfaceVersion(v.clone()));
        }
        _ => {}
    }

    // Required exports.
    let export = |name: &str| function_exports().find(|(n, ..)| n == name).map(|e| e.2);
    for (name, params, results, expected) in [
        (
            "allocate",
            &[ValType::I32][..],
            &[ValType::I32][..],
            "(i32) -> i32",
        ),
        ("deallocate", &[ValType::I32][..], &[][..], "(i32)"),
    ] {
        let Some(index) = export(name) else {
            return Err(CheckError::MissingExport(name));
        };
        match func_type(index) {
            Some((p, r)) if p.as_slice() == params && r.as_slice() == results => {}
            _ => return Err(CheckError::ExportSignature { name, expected }),
        }
    }

    // Imports.
    if imports.len() > limits.imports {
        return limit(format!(
            "{} imports exceed the limit of {}",
            imports.len(),
            limits.imports
        ));
    }
    let mut used = Vec::with_capacity(imports.len());
    for (module, name, ty) in &imports {
        let full = format!("{module}.{name}");
        let known = (module == IMPORT_MODULE)
            .then(|| CwImport::by_name(name))
            .flatten();
        let Some(import) = known else {
            return Err(CheckError::UnknownImport(full));
        };
        let TypeRef::Func(t) = *ty else {
            return Err(CheckError::NonFunctionImport(full));
        };
        let params: Vec<ValType> = import.params().iter().map(|t| val(*t)).collect();
        let results: Vec<ValType> = import.results().iter().map(|t| val(*t)).collect();
        let found = types.get(t as usize);
        if found != Some(&(params.clone(), results.clone())) {
            return Err(CheckError::ImportSignature {
                name: full,
                expected: signature(&params, &results),
                found: found.map_or_else(|| "?".into(), |(p, r)| signature(p, r)),
            });
        }
        used.push(import);
    }

    // Function counts.
    let max_params = types.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let max_results = types.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    for (what, n, max) in [
        ("functions", defined, limits.functions),
        (
            "parameters of one function type",
            max_params,
            limits.function_params,
        ),
        (
            "parameters in total",
            total_params,
            limits.total_function_params,
        ),
        (
            "results of one function type",
            max_results,
            limits.function_results,
        ),
        ("locals of one function", max_locals, limits.function_locals),
        (
            "locals in total",
            total_locals,
            limits.total_function_locals,
        ),
    ] {
        if n > max {
            return limit(format!("{n} {what} exceed the limit of {max}"));
        }
    }

    let entries = Entry::ALL
        .into_iter()
        .filter_map(|e| {
            let (params, _) = func_type(export(e.name())?)?;
            Some((e, params.len()))
        })
        .collect();
    let mut capabilities: Vec<String> = function_exports()
        .filter_map(|(n, ..)| n.strip_prefix("requires_"))
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    capabilities.sort();
    capabilities.dedup();
    let ibc = function_exports().any(|(n, ..)| n.starts_with("ibc_") || n.starts_with("ibc2_"));
    Ok(Interface {
        entries,
        imports: used,
        capabilities,
        migrate_version,
        ibc,
    })
}
