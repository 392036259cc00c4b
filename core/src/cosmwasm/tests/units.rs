//! Regions, sections, the import table, module checks (synthetic modules, the vendored
//! builds, the shared corpus) and the JSON types.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::path::PathBuf;

use proptest::prelude::*;

use crate::abi::{Memory, Trap, Ty};
use crate::cosmwasm::region::{self, Region};
use crate::cosmwasm::types::*;
use crate::cosmwasm::{CheckError, CwImport, Entry, MAX_RESULT_JSON_BYTES, check};

fn mem_with(region_at: u32, r: Region, size: usize) -> Vec<u8> {
    let mut mem = vec![0u8; size];
    mem[region_at as usize..region_at as usize + 12].copy_from_slice(&r.to_bytes());
    mem
}

fn host_message(r: Result<impl core::fmt::Debug, Trap>) -> String {
    match r {
        Err(Trap::Host(m)) => m,
        other => panic!("expected a host trap, got {other:?}"),
    }
}

#[test]
fn regions_out_of_range_trap_with_a_message() {
    let r = |offset, capacity, length| Region {
        offset,
        capacity,
        length,
    };
    // The struct itself outside memory (partly, wholly, at the top of the address space).
    let mem = vec![0u8; 100];
    for ptr in [89, 100, u32::MAX - 5, u32::MAX] {
        let m = host_message(region::get(&mem, ptr));
        assert!(m.contains("outside memory of 100 bytes"), "{m}");
    }
    let cases = [
        (r(0, 10, 5), "offset is 0"),
        (r(50, 10, 11), "length 11 exceeds capacity 10"),
        (r(10, u32::MAX, 0), "overflows 32 bits"),
    ];
    for (region, why) in cases {
        let mem = mem_with(0, region, 100);
        let m = host_message(region::get(&mem, 0));
        assert!(m.contains(why), "{m}");
    }
    // Bytes outside memory.
    let mem = mem_with(0, r(90, 20, 20), 100);
    let view: &dyn Memory = &mem;
    let m = host_message(region::read(view, 0, 1000, "x"));
    assert!(m.contains("lie outside memory"), "{m}");
    // Over the limit: too large, whatever the memory.
    let mem = mem_with(0, r(90, 20_000, 20_000), 100);
    let view: &dyn Memory = &mem;
    let e = region::read(view, 0, 100, "storage key").unwrap_err();
    assert_eq!(
        e,
        Trap::TooLarge {
            what: "storage key",
            len: 20_000,
            max: 100
        }
    );
    // Writes: too small, outside memory; memory unchanged.
    let mut mem = mem_with(0, r(50, 4, 0), 100);
    let before = mem.clone();
    let m = host_message(region::write(&mut mem, 0, b"hello"));
    assert!(m.contains("too small: capacity 4, 5 bytes"), "{m}");
    let mut mem2 = mem_with(0, r(98, 4, 0), 100);
    let m = host_message(region::write(&mut mem2, 0, b"abcd"));
    assert!(m.contains("lie outside memory"), "{m}");
    assert_eq!(mem, before);
    // A good write sets the length; a read gives the bytes back.
    region::write(&mut mem, 0, b"abc").unwrap();
    assert_eq!(region::get(&mem, 0).unwrap(), r(50, 4, 3));
    let view: &dyn Memory = &mem;
    assert_eq!(region::read(view, 0, 3, "x").unwrap(), b"abc");
    // Optional regions: 0 is none, even where memory holds a region.
    assert_eq!(region::read_optional(view, 0, 3, "x").unwrap(), None);
    let moved = mem_with(20, region::get(&mem, 0).unwrap(), 100);
    let mut moved = moved;
    moved[50..53].copy_from_slice(b"abc");
    let view: &dyn Memory = &moved;
    assert_eq!(
        region::read_optional(view, 20, 3, "x").unwrap(),
        Some(&b"abc"[..])
    );
}

#[test]
fn sections_round_trip_and_reject_malformed_input() {
    let parts: [&[u8]; 3] = [b"key", b"", b"value"];
    let encoded = region::encode_sections(&parts);
    assert_eq!(&encoded[..7], b"key\0\0\0\x03");
    assert_eq!(region::count_sections(&encoded), Some(3));
    assert_eq!(region::decode_sections(&encoded).unwrap(), parts);
    assert_eq!(region::decode_sections(&[]).unwrap(), Vec::<&[u8]>::new());
    for bad in [&b"\x01"[..], b"ab\0\0\0\x09", b"x\0\0\0\0"] {
        assert_eq!(region::count_sections(bad), None, "{bad:?}");
        assert_eq!(region::decode_sections(bad), None);
    }
}

proptest! {
    /// Region reads and writes on arbitrary memory at arbitrary pointers never panic, and a
    /// read that succeeds returns exactly the region's length, within the limit.
    #[test]
    fn region_decoding_never_panics(
        mut mem in proptest::collection::vec(any::<u8>(), 0..256),
        ptr in prop_oneof![0u32..300, any::<u32>()],
        max in prop_oneof![0u32..300, any::<u32>()],
        data in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let view: &dyn Memory = &mem;
        if let Ok(bytes) = region::read(view, ptr, max, "x") {
            let r = region::get(&mem, ptr).unwrap();
            prop_assert_eq!(bytes.len() as u32, r.length);
            prop_assert!(r.length <= max && r.length <= r.capacity);
        }
        let _ = region::read_optional(view, ptr, max, "x");
        let _ = region::len(&mem, ptr, max, "x");
        let _ = region::count_sections(&mem);
        let _ = region::decode_sections(&mem);
        if region::write(&mut mem, ptr, &data).is_ok() {
            let view: &dyn Memory = &mem;
            prop_assert_eq!(region::read(view, ptr, u32::MAX, "x").unwrap(), &data[..]);
        }
    }
}

#[test]
fn import_table_has_cosmwasm_vm_signatures() {
    use Ty::{I32, I64};
    // From cosmwasm-vm's `do_*` functions (`packages/vm/src/imports.rs`): u32 is i32.
    let expected: [(&str, usize, Option<Ty>); 24] = [
        ("db_read", 1, Some(I32)),
        ("db_write", 2, None),
        ("db_remove", 1, None),
        ("db_scan", 3, Some(I32)),
        ("db_next", 1, Some(I32)),
        ("db_next_key", 1, Some(I32)),
        ("db_next_value", 1, Some(I32)),
        ("addr_validate", 1, Some(I32)),
        ("addr_canonicalize", 2, Some(I32)),
        ("addr_humanize", 2, Some(I32)),
        ("secp256k1_verify", 3, Some(I32)),
        ("secp256k1_recover_pubkey", 3, Some(I64)),
        ("secp256r1_verify", 3, Some(I32)),
        ("secp256r1_recover_pubkey", 3, Some(I64)),
        ("ed25519_verify", 3, Some(I32)),
        ("ed25519_batch_verify", 3, Some(I32)),
        ("bls12_381_aggregate_g1", 2, Some(I32)),
        ("bls12_381_aggregate_g2", 2, Some(I32)),
        ("bls12_381_pairing_equality", 4, Some(I32)),
        ("bls12_381_hash_to_g1", 4, Some(I32)),
        ("bls12_381_hash_to_g2", 4, Some(I32)),
        ("debug", 1, None),
        ("abort", 1, None),
        ("query_chain", 1, Some(I32)),
    ];
    for (name, arity, result) in expected {
        let import = CwImport::by_name(name).expect(name);
        assert_eq!(import.name(), name);
        assert_eq!(
            (import.params(), import.result()),
            (&[I32; 4][..arity], result),
            "{name}"
        );
        assert_eq!(import.results(), result.as_slice());
    }
    assert_eq!(CwImport::ALL.len(), expected.len());
    assert_eq!(CwImport::by_name("storage_read"), None);
}

/// A module with `imports` (WAT), `exports` (WAT) and one memory.
fn module(imports: &str, exports: &str) -> Vec<u8> {
    let text = format!(
        r#"(module {imports}
            (memory (export "memory") 1)
            (func (export "allocate") (param i32) (result i32) i32.const 0)
            (func (export "deallocate") (param i32))
            {exports})"#
    );
    wat::parse_str(&text).unwrap()
}

const V8: &str = r#"(func (export "interface_version_8"))"#;

#[test]
fn check_accepts_a_minimal_contract_and_lists_its_interface() {
    let wasm = module(
        r#"(import "env" "db_read" (func (param i32) (result i32)))
           (import "env" "secp256k1_recover_pubkey" (func (param i32 i32 i32) (result i64)))"#,
        r#"(func (export "interface_version_8"))
           (func (export "instantiate") (param i32 i32 i32) (result i32) i32.const 0)
           (func (export "query") (param i32 i32) (result i32) i32.const 0)
           (func (export "requires_iterator"))
           (func (export "requires_cosmwasm_2_0"))
           (func (export "ibc_channel_open") (param i32 i32) (result i32) i32.const 0)"#,
    );
    let i = check(&wasm).unwrap();
    assert_eq!(i.entries, vec![(Entry::Instantiate, 3), (Entry::Query, 2)]);
    assert!(i.has(Entry::Query) && !i.has(Entry::Execute));
    assert_eq!(
        i.imports,
        vec![CwImport::DbRead, CwImport::Secp256k1RecoverPubkey]
    );
    assert_eq!(
        i.capabilities,
        vec!["cosmwasm_2_0".to_string(), "iterator".into()]
    );
    assert!(i.ibc);
    assert_eq!(i.migrate_version, None);
}

#[test]
fn check_refuses_what_cosmwasm_vm_refuses_and_says_why() {
    let msg = |wasm: &[u8]| check(wasm).unwrap_err().to_string();
    // Interface versions.
    for (v, release) in [(5, "0.14"), (6, "0.15"), (7, "0.16")] {
        let m = msg(&module(
            "",
            &format!(r#"(func (export "interface_version_{v}"))"#),
        ));
        assert!(
            m.starts_with(&format!(
                "interface_version_{v}: CosmWasm {release} contracts are not supported"
            )),
            "{m}"
        );
    }
    let m = msg(&module("", r#"(func (export "interface_version_9"))"#));
    assert!(
        m.contains("interface_version_9: unknown interface version"),
        "{m}"
    );
    let m = msg(&module("", r#"(func (export "cosmwasm_vm_version_4"))"#));
    assert!(
        m.starts_with("cosmwasm_vm_version_4: a CosmWasm 0.11–0.13 contract"),
        "{m}"
    );
    assert!(msg(&module("", "")).contains("missing the marker export interface_version_*"));
    let two = format!(r#"{V8}(func (export "interface_version_7"))"#);
    assert_eq!(
        check(&module("", &two)),
        Err(CheckError::ManyInterfaceVersions)
    );
    // Imports: unknown, from another module, wrong signature, not a function, too many.
    let m = msg(&module(r#"(import "env" "storage_read" (func))"#, V8));
    assert!(m.contains("unsupported import `env.storage_read`"), "{m}");
    let m = msg(&module(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func))"#,
        V8,
    ));
    assert!(m.contains("`wasi_snapshot_preview1.fd_write`"), "{m}");
    let m = msg(&module(
        r#"(import "env" "db_read" (func (param i64) (result i32)))"#,
        V8,
    ));
    assert_eq!(
        m,
        "import `env.db_read` has signature (i64) -> i32, expected (i32) -> i32"
    );
    let m = msg(&module(r#"(import "env" "debug" (global i32))"#, V8));
    assert!(m.contains("`env.debug` is not a function"), "{m}");
    let many: String = (0..101)
        .map(|_| r#"(import "env" "debug" (func (param i32)))"#)
        .collect();
    assert!(msg(&module(&many, V8)).contains("101 imports exceed the limit of 100"));
    // Required exports.
    let no_alloc = wat::parse_str(format!(
        r#"(module (memory 1) {V8} (func (export "deallocate") (param i32)))"#
    ))
    .unwrap();
    assert_eq!(check(&no_alloc), Err(CheckError::MissingExport("allocate")));
    let bad_alloc = wat::parse_str(format!(
        r#"(module (memory 1) {V8} (func (export "allocate") (param i64) (result i32) i32.const 0) (func (export "deallocate") (param i32)))"#
    )).unwrap();
    assert!(msg(&bad_alloc).contains("`allocate` must be a function (i32) -> i32"));
    // Memories and tables.
    let shell = |memory: &str, table: &str| {
        wat::parse_str(format!(
        r#"(module {memory} {table} {V8} (func (export "allocate") (param i32) (result i32) i32.const 0) (func (export "deallocate") (param i32)))"#
    )).unwrap()
    };
    assert!(msg(&shell("", "")).contains("exactly one memory"));
    assert!(msg(&shell("(memory 1 2)", "")).contains("maximum must be unset"));
    assert!(msg(&shell("(memory 513)", "")).contains("513 initial pages exceed 512"));
    assert!(msg(&shell("(memory 1)", "(table 1 funcref)")).contains("table must have a maximum"));
    assert!(
        msg(&shell("(memory 1)", "(table 1 2501 funcref)")).contains("2501 elements exceeds 2500")
    );
    assert!(check(&shell("(memory 1)", "(table 1 2500 funcref)")).is_ok());
    // Features cosmwasm-vm turns off: bulk memory, SIMD.
    let bulk = module(
        "",
        &format!(r#"{V8} (func (param i32) local.get 0 local.get 0 i32.const 1 memory.copy)"#),
    );
    assert!(
        matches!(check(&bulk), Err(CheckError::Invalid(_))),
        "{:?}",
        check(&bulk)
    );
    let simd = module(
        "",
        &format!(r#"{V8} (func (result v128) v128.const i64x2 0 0)"#),
    );
    assert!(matches!(check(&simd), Err(CheckError::Invalid(_))));
    // Locals and results limits.
    let locals = module(
        "",
        &format!(r#"{V8} (func (local {}))"#, "i32 ".repeat(101)),
    );
    assert!(msg(&locals).contains("101 locals of one function exceed the limit of 100"));
    let results = module(
        "",
        &format!(r#"{V8} (func (result i32 i32) i32.const 0 i32.const 0)"#),
    );
    assert!(msg(&results).contains("2 results of one function type exceed the limit of 1"));
    assert!(matches!(
        check(b"\0asm garbage"),
        Err(CheckError::Invalid(_))
    ));
}

#[test]
fn check_reads_the_migrate_version() {
    let mut wasm = module("", V8);
    wasm.extend_from_slice(&custom_section("cw_migrate_version", b"42"));
    assert_eq!(check(&wasm).unwrap().migrate_version, Some(42));
    let mut bad = module("", V8);
    bad.extend_from_slice(&custom_section("cw_migrate_version", b"forty-two"));
    assert!(matches!(check(&bad), Err(CheckError::Invalid(_))));
}

fn custom_section(name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    let mut section = vec![0u8, body.len() as u8];
    section.extend(body);
    section
}

/// The vendored builds (`tests/contracts/cosmwasm`).
pub(super) fn vendored(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/contracts/cosmwasm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn vendored_builds_pass_the_check() {
    use Entry::*;
    for (file, entries) in [
        (
            "cw20-base-2.0.0.wasm",
            &[Instantiate, Execute, Query, Migrate][..],
        ),
        ("cw4-stake-2.0.0.wasm", &[Instantiate, Execute, Query][..]),
        (
            "cw3-fixed-multisig-2.0.0.wasm",
            &[Instantiate, Execute, Query][..],
        ),
    ] {
        let i = check(&vendored(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let found: Vec<Entry> = i.entries.iter().map(|(e, _)| *e).collect();
        assert_eq!(found, entries, "{file}");
        assert_eq!(i.params(Instantiate), Some(3), "{file}");
        assert_eq!(i.params(Query), Some(2), "{file}");
        assert!(
            i.imports.contains(&CwImport::DbRead),
            "{file}: {:?}",
            i.imports
        );
        assert!(
            i.capabilities.contains(&"iterator".to_string()),
            "{file}: {:?}",
            i.capabilities
        );
        assert!(!i.ibc);
    }
}

/// The shared corpus, or `None` (said on stderr) when it is missing; with
/// `SYNOR_REQUIRE_CORPUS=1` a missing corpus fails.
fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("SYNOR_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
        PathBuf::from,
    );
    if dir.join("MANIFEST.tsv").is_file() {
        return Some(dir);
    }
    let message = format!(
        "CORPUS MISSING: {} not found: the CosmWasm corpus checks did not run\n",
        dir.display()
    );
    assert!(
        std::env::var_os("SYNOR_REQUIRE_CORPUS").is_none(),
        "{message}"
    );
    use std::io::Write;
    let _ = std::io::stderr().write_all(message.as_bytes());
    None
}

/// Exported function names of `wasm` (for the expectations below, independently of `check`).
fn export_names(wasm: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::ExportSection(reader)) = payload {
            names.extend(
                reader
                    .into_iter()
                    .filter_map(Result::ok)
                    .map(|e| e.name.to_string()),
            );
        }
    }
    names
}

/// Every CosmWasm and wasmd build of the corpus: an `interface_version_8` build is accepted
/// unless it breaks a rule of cosmwasm-vm 3.0 the check names; every older one is refused
/// with an error naming its marker.
#[test]
fn corpus_builds_are_judged_by_their_interface_version() {
    let Some(dir) = corpus() else { return };
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut report = String::new();
    let (mut accepted, mut refused_v8, mut old) = (0, 0, 0);
    for line in manifest.lines().skip(1) {
        let path = line.split('\t').next().unwrap();
        if !(path.starts_with("cosmwasm/") || path.starts_with("wasmd/")) {
            continue;
        }
        let wasm = std::fs::read(dir.join(path)).unwrap();
        let exports = export_names(&wasm);
        let marker = exports
            .iter()
            .find(|e| e.starts_with("interface_version_") || e.starts_with("cosmwasm_vm_version_"));
        let result = check(&wasm);
        match (marker.map(String::as_str), &result) {
            (Some("interface_version_8"), Ok(i)) => {
                accepted += 1;
                // Every entry point it exports is listed, and nothing else.
                let listed: Vec<&str> = i.entries.iter().map(|(e, _)| e.name()).collect();
                let exported: Vec<&str> = Entry::ALL
                    .iter()
                    .map(|e| e.name())
                    .filter(|n| exports.iter().any(|x| x == n))
                    .collect();
                assert_eq!(listed, exported, "{path}");
            }
            (Some("interface_version_8"), Err(e)) => {
                // Refused only for a rule of cosmwasm-vm 3.0 the message names (a static
                // limit, a feature its validator turns off): never for the version or for an
                // import the table lacks.
                refused_v8 += 1;
                let m = e.to_string();
                let feature_off =
                    matches!(e, CheckError::Invalid(_)) && m.contains("support is not enabled");
                assert!(
                    matches!(e, CheckError::Limit(_)) || feature_off,
                    "{path}: {m}"
                );
                report.push_str(&format!("  {path}: {m}\n"));
            }
            (Some(marker), Err(e)) => {
                old += 1;
                assert!(e.to_string().starts_with(marker), "{path}: {e}");
            }
            (Some(marker), Ok(_)) => panic!("{path}: {marker} accepted"),
            (None, r) => {
                old += 1;
                let e = r.as_ref().expect_err(path);
                assert!(
                    e.to_string().contains("missing the marker export"),
                    "{path}: {e}"
                );
            }
        }
    }
    std::eprintln!(
        "cosmwasm corpus: {accepted} accepted, {old} older refused, {refused_v8} v8 refused:\n{report}"
    );
    assert!(accepted >= 10, "{accepted}");
}

#[test]
fn env_and_info_are_cosmwasm_std_json() {
    let env = Env {
        block: BlockInfo {
            height: 12345,
            time: Timestamp(1_571_797_419_879_305_533),
            chain_id: "cosmos-testnet-14002".into(),
        },
        transaction: Some(TransactionInfo {
            index: 3,
            hash: None,
        }),
        contract: ContractInfo {
            address: "cosmwasm1contract".into(),
        },
    };
    let json = r#"{"block":{"height":12345,"time":"1571797419879305533","chain_id":"cosmos-testnet-14002"},"transaction":{"index":3},"contract":{"address":"cosmwasm1contract"}}"#;
    assert_eq!(String::from_utf8(to_json(&env).unwrap()).unwrap(), json);
    assert_eq!(serde_json::from_str::<Env>(json).unwrap(), env);
    let no_tx = Env {
        transaction: None,
        ..env.clone()
    };
    let text = String::from_utf8(to_json(&no_tx).unwrap()).unwrap();
    assert!(text.contains(r#""transaction":null"#), "{text}");
    // 3.x's transaction hash.
    let hashed: Env =
        serde_json::from_str(&json.replace(r#"{"index":3}"#, r#"{"index":3,"hash":"AAE="}"#))
            .unwrap();
    assert_eq!(hashed.transaction.unwrap().hash, Some(Binary(vec![0, 1])));
    let info = MessageInfo {
        sender: "cosmwasm1sender".into(),
        funds: vec![Coin {
            denom: "earth".into(),
            amount: Uint128(u128::MAX),
        }],
    };
    let json = r#"{"sender":"cosmwasm1sender","funds":[{"denom":"earth","amount":"340282366920938463463374607431768211455"}]}"#;
    assert_eq!(String::from_utf8(to_json(&info).unwrap()).unwrap(), json);
    assert_eq!(serde_json::from_str::<MessageInfo>(json).unwrap(), info);
    assert!(
        serde_json::from_str::<Coin>(r#"{"denom":"a","amount":1000}"#).is_err(),
        "amounts are strings"
    );
    assert!(serde_json::from_str::<Coin>(r#"{"denom":"a","amount":"-1"}"#).is_err());
    assert!(serde_json::from_str::<Binary>(r#""not base64!""#).is_err());
}

#[test]
fn responses_parse_with_unsupported_messages_named() {
    // cw20-base's `send` response (cosmwasm-std 2.x JSON), with messages it never sends
    // alongside: a staking delegation, a bank burn, a custom message.
    let json = br#"{"ok":{"messages":[
        {"id":0,"payload":"","msg":{"wasm":{"execute":{"contract_addr":"cosmwasm1stake","msg":"eyJyZWNlaXZlIjp7fX0=","funds":[]}}},"gas_limit":null,"reply_on":"never"},
        {"id":7,"msg":{"staking":{"delegate":{"validator":"v","amount":{"denom":"a","amount":"1"}}}},"gas_limit":5000,"reply_on":"success"},
        {"id":8,"msg":{"bank":{"burn":{"amount":[]}}},"gas_limit":null,"reply_on":"always"},
        {"id":9,"msg":{"custom":{}},"gas_limit":null,"reply_on":"error"},
        {"id":10,"msg":{"bank":{"send":{"to_address":"b","amount":[{"denom":"earth","amount":"5"}]}}},"gas_limit":null,"reply_on":"never"},
        {"id":11,"msg":{"wasm":{"instantiate2":{"admin":null,"code_id":3,"label":"l","msg":"e30=","funds":[],"salt":"AQ=="}}},"gas_limit":null,"reply_on":"never"}
      ],"attributes":[{"key":"action","value":"send"},{"key":"amount","value":"100"}],
      "events":[{"type":"transfer","attributes":[{"key":"k","value":"v"}]}],"data":"AQID"}}"#;
    let ContractResult::Ok(response) = parse_response(json).unwrap() else {
        panic!()
    };
    let m = &response.messages;
    assert_eq!(m.len(), 6);
    assert_eq!(
        m[0].msg,
        CosmosMsg::Wasm(WasmMsg::Execute {
            contract_addr: "cosmwasm1stake".into(),
            msg: Binary(br#"{"receive":{}}"#.to_vec()),
            funds: vec![],
        })
    );
    assert_eq!(
        (m[0].reply_on, m[0].payload.clone()),
        (ReplyOn::Never, Binary::default())
    );
    assert_eq!(m[1].msg.unsupported().as_deref(), Some("staking"));
    assert_eq!(
        (m[1].gas_limit, m[1].reply_on),
        (Some(5000), ReplyOn::Success)
    );
    assert_eq!(m[2].msg.unsupported().as_deref(), Some("bank.burn"));
    assert_eq!(m[3].msg.unsupported().as_deref(), Some("custom"));
    assert_eq!(m[4].msg.unsupported(), None);
    assert!(
        matches!(&m[5].msg, CosmosMsg::Wasm(WasmMsg::Instantiate2 { code_id: 3, salt, .. }) if salt.0 == [1])
    );
    assert_eq!(response.data, Some(Binary(vec![1, 2, 3])));
    assert_eq!(response.events[0].ty, "transfer");
    // Supported messages serialize back to the same JSON shape.
    let again = to_json(&m[0]).unwrap();
    let back: SubMsg = serde_json::from_slice(&again).unwrap();
    assert_eq!(back, m[0]);
    assert!(
        to_json(&m[1]).is_err(),
        "unsupported messages cannot be serialized"
    );
    // Errors, bounds, malformed messages.
    assert_eq!(
        parse_response(br#"{"error":"Unauthorized"}"#).unwrap(),
        ContractResult::Err("Unauthorized".into())
    );
    // A missing `data` is `None`, as serde (and so cosmwasm-vm) reads an absent option.
    let no_data = parse_response(br#"{"ok":{"messages":[],"attributes":[],"events":[]}}"#).unwrap();
    assert!(matches!(
        no_data,
        ContractResult::Ok(Response { data: None, .. })
    ));
    let long = vec![b' '; MAX_RESULT_JSON_BYTES + 1];
    assert_eq!(
        parse_response(&long),
        Err(ParseError::TooLong(MAX_RESULT_JSON_BYTES + 1))
    );
    for bad in [&br#"{"ok":{"messages":[{"id":0,"msg":{},"gas_limit":null,"reply_on":"never"}],"attributes":[],"events":[],"data":null}}"#[..],
                br#"{"ok":{"messages":[{"id":0,"msg":{"bank":{"send":{}}},"gas_limit":null,"reply_on":"never"}],"attributes":[],"events":[],"data":null}}"#,
                br#"{"ok":{"messages":[{"id":0,"msg":{"wasm":{},"bank":{}},"gas_limit":null,"reply_on":"never"}],"attributes":[],"events":[],"data":null}}"#,
                br#"{"ok":{"messages":[],"events":[],"data":null}}"#] {
        assert!(matches!(parse_response(bad), Err(ParseError::Json(_))), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn query_results_must_hold_json() {
    assert_eq!(
        parse_query_result(br#"{"ok":"eyJiYWxhbmNlIjoiMTAwIn0="}"#).unwrap(),
        ContractResult::Ok(Binary(br#"{"balance":"100"}"#.to_vec()))
    );
    assert!(matches!(
        parse_query_result(br#"{"ok":"bm90IGpzb24="}"#),
        Err(ParseError::NotJson(_))
    ));
    assert_eq!(
        parse_query_result(br#"{"error":"not found"}"#).unwrap(),
        ContractResult::Err("not found".into())
    );
}

#[test]
fn replies_and_queries_are_cosmwasm_std_json() {
    let reply = Reply {
        id: 4,
        payload: Binary(vec![9]),
        gas_used: 1234,
        result: SubMsgResult::Ok(SubMsgResponse {
            events: vec![Event {
                ty: "wasm".into(),
                attributes: vec![Attribute {
                    key: "a".into(),
                    value: "b".into(),
                }],
            }],
            data: None,
            msg_responses: vec![MsgResponse {
                type_url: "/cosmwasm.wasm.v1.MsgExecuteContractResponse".into(),
                value: Binary(vec![]),
            }],
        }),
    };
    let json = r#"{"id":4,"payload":"CQ==","gas_used":1234,"result":{"ok":{"events":[{"type":"wasm","attributes":[{"key":"a","value":"b"}]}],"data":null,"msg_responses":[{"type_url":"/cosmwasm.wasm.v1.MsgExecuteContractResponse","value":""}]}}}"#;
    assert_eq!(String::from_utf8(to_json(&reply).unwrap()).unwrap(), json);
    assert_eq!(serde_json::from_str::<Reply>(json).unwrap(), reply);
    let failed = Reply {
        id: 1,
        payload: Binary::default(),
        gas_used: 0,
        result: SubMsgResult::Err("boom".into()),
    };
    assert_eq!(
        String::from_utf8(to_json(&failed).unwrap()).unwrap(),
        r#"{"id":1,"payload":"","gas_used":0,"result":{"error":"boom"}}"#
    );
    // A 1.x-style reply (no payload, no gas_used) still parses.
    let old: Reply =
        serde_json::from_str(r#"{"id":1,"result":{"ok":{"events":[],"data":null}}}"#).unwrap();
    assert_eq!(old.gas_used, 0);
    let queries = [
        (r#"{"bank":{"balance":{"address":"a","denom":"d"}}}"#, None),
        (
            r#"{"wasm":{"smart":{"contract_addr":"c","msg":"e30="}}}"#,
            None,
        ),
        (
            r#"{"wasm":{"raw":{"contract_addr":"c","key":"AA=="}}}"#,
            None,
        ),
        (r#"{"bank":{"supply":{"denom":"d"}}}"#, Some("bank.supply")),
        (r#"{"grpc":{"path":"/x","data":""}}"#, Some("grpc")),
    ];
    for (json, unsupported) in queries {
        let q: QueryRequest = serde_json::from_str(json).unwrap();
        assert_eq!(q.unsupported().as_deref(), unsupported, "{json}");
        if unsupported.is_none() {
            assert_eq!(String::from_utf8(to_json(&q).unwrap()).unwrap(), json);
        }
    }
    let sys: QuerierResult = SystemResult::Err(SystemError::NoSuchContract { addr: "x".into() });
    assert_eq!(
        String::from_utf8(to_json(&sys).unwrap()).unwrap(),
        r#"{"error":{"no_such_contract":{"addr":"x"}}}"#
    );
}

proptest! {
    /// The module check on a real build with bytes flipped, cut or appended never panics.
    #[test]
    fn check_never_panics_on_damaged_modules(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let mut wasm = module(r#"(import "env" "db_read" (func (param i32) (result i32)))"#, V8);
        for (at, byte) in flips {
            let i = at % wasm.len();
            wasm[i] = byte;
        }
        wasm.truncate(cut % (wasm.len() + 1));
        let _ = check(&wasm);
    }
}

/// Only modules with a CosmWasm marker are CosmWasm's to judge: a module without one is
/// left to synor's ABI whatever CosmWasm's rules would say of it (here: no memory).
#[test]
fn detect_judges_only_modules_with_a_marker() {
    let plain =
        wat::parse_str(r#"(module (func (export "one") (result i32) (i32.const 1)))"#).unwrap();
    assert_eq!(crate::cosmwasm::detect(&plain), Ok(None));
    let marked = wat::parse_str(
        r#"(module (func (export "interface_version_8")) (func (export "allocate")))"#,
    )
    .unwrap();
    assert!(crate::cosmwasm::detect(&marked).is_err());
    let cw20 = vendored("cw20-base-2.0.0.wasm");
    assert!(crate::cosmwasm::detect(&cw20).unwrap().is_some());
}
