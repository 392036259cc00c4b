//! The imports through `CwContext::call` and `dispatch`: storage, iterators, addresses,
//! signatures, queries, debug and abort, and their gas.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::{TestGuest, context, ns};
use crate::abi::Trap;
use crate::cosmwasm::region::decode_sections;
use crate::cosmwasm::types::{
    self, Binary, ContractResult, QuerierResult, SystemError, SystemResult,
};
use crate::cosmwasm::{CwContext, CwGas, CwImport, MAX_ITERATORS, Querier, Step, crypto};
use crate::gas::GasSchedule;

const ASC: u64 = 1;
const DESC: u64 = 2;

/// `import` with `args` through `call`.
fn call(
    ctx: &mut CwContext,
    g: &mut TestGuest,
    import: CwImport,
    args: &[u32],
) -> Result<Option<u64>, Trap> {
    let args: Vec<u64> = args.iter().map(|a| u64::from(*a)).collect();
    ctx.call(import, &args, g)
}

fn write(ctx: &mut CwContext, g: &mut TestGuest, key: &[u8], value: &[u8]) {
    let (k, v) = (g.region(key), g.region(value));
    assert_eq!(call(ctx, g, CwImport::DbWrite, &[k, v]), Ok(None));
}

fn read(ctx: &mut CwContext, g: &mut TestGuest, key: &[u8]) -> Option<Vec<u8>> {
    let k = g.region(key);
    match call(ctx, g, CwImport::DbRead, &[k]).unwrap() {
        Some(0) => None,
        Some(ptr) => Some(g.read(ptr as u32)),
        None => panic!("db_read returns a value"),
    }
}

#[test]
fn storage_reads_its_own_writes_namespaced_and_journaled() {
    let state: BTreeMap<Vec<u8>, Vec<u8>> = [
        (ns(b"old"), b"1".to_vec()),
        (b"other contract".to_vec(), b"x".to_vec()),
    ]
    .into();
    let mut ctx = context(10_000_000, state);
    let mut g = TestGuest::new();
    assert_eq!(read(&mut ctx, &mut g, b"old").as_deref(), Some(&b"1"[..]));
    assert_eq!(read(&mut ctx, &mut g, b"missing"), None);
    write(&mut ctx, &mut g, b"new", b"value");
    assert_eq!(
        read(&mut ctx, &mut g, b"new").as_deref(),
        Some(&b"value"[..])
    );
    // An empty value is a value (its region is allocated, with length 0).
    write(&mut ctx, &mut g, b"empty", b"");
    assert_eq!(read(&mut ctx, &mut g, b"empty"), Some(Vec::new()));
    let k = g.region(b"old");
    assert_eq!(call(&mut ctx, &mut g, CwImport::DbRemove, &[k]), Ok(None));
    assert_eq!(read(&mut ctx, &mut g, b"old"), None);
    // The state saw nothing; the journal holds the namespaced writes.
    let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = ctx
        .writes
        .writes()
        .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(
        writes,
        vec![
            (ns(b"empty"), Some(Vec::new())),
            (ns(b"new"), Some(b"value".to_vec())),
            (ns(b"old"), None),
        ]
    );
}

#[test]
fn storage_refuses_what_cosmwasm_and_wasmd_refuse() {
    let mut ctx = context(u64::MAX >> 2, BTreeMap::new());
    let mut g = TestGuest::new();
    // Keys and values over the limits: too_large, before anything is written.
    let long_key = g.region(&vec![1; 64 * 1024 + 1]);
    let v = g.region(b"v");
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::DbWrite, &[long_key, v]),
        Err(Trap::TooLarge {
            what: "storage key",
            len: 65537,
            max: 65536
        })
    );
    let k = g.region(b"k");
    let long_value = g.region(&vec![1; 128 * 1024 + 1]);
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::DbWrite, &[k, long_value]),
        Err(Trap::TooLarge {
            what: "storage value",
            len: 131073,
            max: 131072
        })
    );
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::DbRead, &[long_key]),
        Err(Trap::TooLarge {
            what: "storage key",
            len: 65537,
            max: 65536
        })
    );
    // At the limits: accepted.
    let max_key = g.region(&vec![2; 64 * 1024]);
    let max_value = g.region(&vec![3; 128 * 1024]);
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::DbWrite, &[max_key, max_value]),
        Ok(None)
    );
    // Empty keys (wasmd's store refuses them).
    let empty = g.region(b"");
    let r = call(&mut ctx, &mut g, CwImport::DbWrite, &[empty, v]);
    assert_eq!(r, Err(Trap::Host("storage key is empty".into())));
    // A query's storage is read-only.
    ctx.read_only = true;
    for (import, args) in [
        (CwImport::DbWrite, vec![k, v]),
        (CwImport::DbRemove, vec![k]),
    ] {
        let r = call(&mut ctx, &mut g, import, &args).unwrap_err();
        assert!(r.to_string().contains("read-only"), "{r}");
    }
    assert_eq!(ctx.writes.len(), 1);
    // Reading still works.
    assert_eq!(
        read(&mut ctx, &mut g, &[2; 64 * 1024]).map(|v| v.len()),
        Some(128 * 1024)
    );
}

/// A state with keys under the contract and around it, and the contract's own writes over
/// it: an overwrite, a new key, a removal.
fn iteration_fixture() -> (CwContext, TestGuest) {
    let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for k in [&b"a"[..], b"b", b"c", b"d"] {
        state.insert(ns(k), [b"state-", k].concat());
    }
    // Neighbouring namespaces must stay invisible.
    state.insert([6u8; 32].to_vec(), b"before".to_vec());
    state.insert([8u8; 32].to_vec(), b"after".to_vec());
    let mut ctx = context(100_000_000, state);
    let mut g = TestGuest::new();
    write(&mut ctx, &mut g, b"a", b"own-a");
    write(&mut ctx, &mut g, b"bb", b"own-bb");
    let c = g.region(b"c");
    call(&mut ctx, &mut g, CwImport::DbRemove, &[c]).unwrap();
    (ctx, g)
}

/// Every entry of a new iterator over `[start, end)` in `order`, through `db_next`.
fn scan(
    ctx: &mut CwContext,
    g: &mut TestGuest,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
    order: u64,
) -> Vec<(String, String)> {
    let start = start.map_or(0, |s| g.region(s));
    let end = end.map_or(0, |e| g.region(e));
    let id = ctx
        .call(CwImport::DbScan, &[start.into(), end.into(), order], g)
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    loop {
        let ptr = call(ctx, g, CwImport::DbNext, &[id as u32])
            .unwrap()
            .unwrap();
        let sections = g.read(ptr as u32);
        let parts = decode_sections(&sections).unwrap();
        assert_eq!(parts.len(), 2);
        if parts[0].is_empty() {
            assert_eq!(sections, [0; 8], "the end is an empty key and value");
            return out;
        }
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        out.push((text(parts[0]), text(parts[1])));
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn iterators_merge_own_writes_in_both_orders() {
    let (mut ctx, mut g) = iteration_fixture();
    let all = pairs(&[
        ("a", "own-a"),
        ("b", "state-b"),
        ("bb", "own-bb"),
        ("d", "state-d"),
    ]);
    assert_eq!(scan(&mut ctx, &mut g, None, None, ASC), all);
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(scan(&mut ctx, &mut g, None, None, DESC), reversed);
    // Start inclusive, end exclusive, whatever the order.
    let b_to_d = pairs(&[("b", "state-b"), ("bb", "own-bb")]);
    assert_eq!(scan(&mut ctx, &mut g, Some(b"b"), Some(b"d"), ASC), b_to_d);
    let mut d_to_b = b_to_d.clone();
    d_to_b.reverse();
    assert_eq!(scan(&mut ctx, &mut g, Some(b"b"), Some(b"d"), DESC), d_to_b);
    assert_eq!(
        scan(&mut ctx, &mut g, Some(b"bb"), None, ASC),
        pairs(&[("bb", "own-bb"), ("d", "state-d")])
    );
    assert_eq!(
        scan(&mut ctx, &mut g, None, Some(b"b"), DESC),
        pairs(&[("a", "own-a")])
    );
    // Empty and reversed ranges hold nothing.
    assert_eq!(scan(&mut ctx, &mut g, Some(b"c"), Some(b"c"), ASC), vec![]);
    assert_eq!(scan(&mut ctx, &mut g, Some(b"d"), Some(b"a"), DESC), vec![]);
    assert_eq!(scan(&mut ctx, &mut g, Some(b"e"), None, ASC), vec![]);
}

#[test]
fn next_key_and_next_value_step_the_same_iterator() {
    let (mut ctx, mut g) = iteration_fixture();
    let id = ctx
        .call(CwImport::DbScan, &[0, 0, ASC], &mut g)
        .unwrap()
        .unwrap() as u32;
    let key = call(&mut ctx, &mut g, CwImport::DbNextKey, &[id])
        .unwrap()
        .unwrap();
    assert_eq!(g.read(key as u32), b"a");
    let value = call(&mut ctx, &mut g, CwImport::DbNextValue, &[id])
        .unwrap()
        .unwrap();
    assert_eq!(g.read(value as u32), b"state-b");
    // A write between steps is seen by the next step (the iterator reads the merged view).
    write(&mut ctx, &mut g, b"ba", b"late");
    let key = call(&mut ctx, &mut g, CwImport::DbNextKey, &[id])
        .unwrap()
        .unwrap();
    assert_eq!(g.read(key as u32), b"ba");
    for _ in 0..2 {
        call(&mut ctx, &mut g, CwImport::DbNextKey, &[id]).unwrap();
    }
    // At the end: 0, without allocating; and it stays at the end.
    let before = g.allocations;
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::DbNextKey, &[id]),
        Ok(Some(0))
    );
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::DbNextValue, &[id]),
        Ok(Some(0))
    );
    assert_eq!(g.allocations, before);
    // Ids start at 1, one per scan.
    let second = ctx.call(CwImport::DbScan, &[0, 0, DESC], &mut g).unwrap();
    assert_eq!((id, second), (1, Some(2)));
}

#[test]
fn iterator_misuse_traps() {
    let (mut ctx, mut g) = iteration_fixture();
    for order in [0u64, 3, u64::from(u32::MAX)] {
        let r = ctx
            .call(CwImport::DbScan, &[0, 0, order], &mut g)
            .unwrap_err();
        assert!(r.to_string().contains("invalid iteration order"), "{r}");
    }
    for id in [0u32, 1, u32::MAX] {
        let r = call(&mut ctx, &mut g, CwImport::DbNext, &[id]).unwrap_err();
        assert_eq!(
            r,
            Trap::Host(alloc::format!("iterator {id} does not exist"))
        );
    }
    for _ in 0..MAX_ITERATORS {
        ctx.call(CwImport::DbScan, &[0, 0, ASC], &mut g).unwrap();
    }
    let r = ctx
        .call(CwImport::DbScan, &[0, 0, ASC], &mut g)
        .unwrap_err();
    assert!(r.to_string().contains("iterators in one call"), "{r}");
}

/// `import(input, out)` as a contract calls it: `Ok(Ok(out bytes))` for 0, `Ok(Err(message))`
/// for an error region.
fn address(
    ctx: &mut CwContext,
    g: &mut TestGuest,
    import: CwImport,
    input: &[u8],
) -> Result<Result<Vec<u8>, String>, Trap> {
    let src = g.region(input);
    // cosmwasm-std's buffers: 64 bytes for canonical addresses, 90 for human ones.
    let dst = g.alloc(if import == CwImport::AddrHumanize {
        90
    } else {
        64
    });
    match call(ctx, g, import, &[src, dst])?.unwrap() {
        0 if import == CwImport::AddrValidate => Ok(Ok(Vec::new())),
        0 => Ok(Ok(g.read(dst))),
        ptr => Ok(Err(String::from_utf8(g.read(ptr as u32)).unwrap())),
    }
}

#[test]
fn addresses_follow_mock_api() {
    use CwImport::{AddrCanonicalize as C, AddrHumanize as H, AddrValidate as V};
    let mut ctx = context(100_000_000, BTreeMap::new());
    let mut g = TestGuest::new();
    // `MockApi::default().addr_make("creator")` and its juno twin (cosmwasm-vm's docs).
    let creator = "cosmwasm1h34lmpywh4upnjdg90cjf4j70aee6z8qqfspugamjp42e4q28kqs8s7vcp";
    let juno = "juno1h34lmpywh4upnjdg90cjf4j70aee6z8qqfspugamjp42e4q28kqsksmtyp";
    let canonical = address(&mut ctx, &mut g, C, creator.as_bytes())
        .unwrap()
        .unwrap();
    {
        use k256::sha2::{Digest as _, Sha256};
        assert_eq!(canonical, Sha256::digest(b"creator").to_vec());
    }
    assert_eq!(
        address(&mut ctx, &mut g, H, &canonical).unwrap().unwrap(),
        creator.as_bytes()
    );
    assert_eq!(
        address(&mut ctx, &mut g, V, creator.as_bytes()).unwrap(),
        Ok(Vec::new())
    );
    let err = |m: &str| Ok(Err(m.to_string()));
    assert_eq!(
        address(&mut ctx, &mut g, V, juno.as_bytes()),
        err("Wrong bech32 prefix")
    );
    // Upper case canonicalizes (bech32 allows one case) but is not normalized.
    let upper = creator.to_ascii_uppercase();
    assert_eq!(
        address(&mut ctx, &mut g, C, upper.as_bytes()).unwrap(),
        Ok(canonical.clone())
    );
    assert_eq!(
        address(&mut ctx, &mut g, V, upper.as_bytes()),
        err("Invalid input: address not normalized")
    );
    let mut bad_checksum = creator.to_string();
    bad_checksum.pop();
    bad_checksum.push('q');
    assert_eq!(
        address(&mut ctx, &mut g, V, bad_checksum.as_bytes()),
        err("Error decoding bech32")
    );
    assert_eq!(address(&mut ctx, &mut g, C, b""), err("Input is empty"));
    assert_eq!(
        address(&mut ctx, &mut g, V, b"\xff\xfe"),
        err("Input is not valid UTF-8")
    );
    assert_eq!(
        address(&mut ctx, &mut g, H, b""),
        err("Invalid canonical address length")
    );
    // Over the input limits: traps, as cosmwasm-vm's region reads.
    let r = address(&mut ctx, &mut g, V, &[b'a'; 257]);
    assert_eq!(
        r,
        Err(Trap::TooLarge {
            what: "human address",
            len: 257,
            max: 256
        })
    );
    let r = address(&mut ctx, &mut g, H, &[1; 65]);
    assert_eq!(
        r,
        Err(Trap::TooLarge {
            what: "canonical address",
            len: 65,
            max: 64
        })
    );
    // Another prefix.
    ctx.api = alloc::boxed::Box::new(crate::cosmwasm::Bech32Api::new("juno").unwrap());
    assert_eq!(
        address(&mut ctx, &mut g, H, &canonical).unwrap().unwrap(),
        juno.as_bytes()
    );
    // A destination region too small for the result traps.
    let src = g.region(&canonical);
    let small = g.alloc(10);
    let r = call(&mut ctx, &mut g, H, &[src, small]).unwrap_err();
    assert!(r.to_string().contains("too small"), "{r}");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use k256::sha2::{Digest as _, Sha256};
    Sha256::digest(data).to_vec()
}

// cosmwasm-crypto's test vectors (`packages/crypto/testdata/secp256k1_tests.json`, first
// entry; `secp256k1.rs`'s recovery tests).
const K1_HASH: &str = "5ae8317d34d1e595e3fa7247db80c0af4320cce1116de187f8f7e2e099c0d8d0";
const K1_SIG: &str = "207082eb2c3dfa0b454e0906051270ba4074ac93760ba9e7110cd9471475111151eb0dbbc9920e72146fb564f99d039802bf6ef2561446eb126ef364d21ee9c4";
const K1_KEY: &str = "04051c1ee2190ecfb174bfe4f90763f2b4ff7517b70a2aec1876ebcfd644c4633fb03f3cfbd94b1f376e34592d9d41ccaf640bb751b00a1fadeb0c01157769eb73";

#[test]
fn secp256k1_verifies_with_cosmwasm_codes() {
    let (hash, sig, key) = (hex(K1_HASH), hex(K1_SIG), hex(K1_KEY));
    assert_eq!(crypto::secp256k1_verify(&hash, &sig, &key), crypto::VALID);
    let mut other = hash.clone();
    other[0] ^= 1;
    assert_eq!(
        crypto::secp256k1_verify(&other, &sig, &key),
        crypto::INVALID
    );
    // The cosmos vector from secp256k1.rs (compressed key, message hashed with SHA-256).
    let cosmos_key = hex("034f04181eeba35391b858633a765c4a0c189697b40d216354d50890d350c70290");
    let msg = hex(
        "0a93010a90010a1c2f636f736d6f732e62616e6b2e763162657461312e4d736753656e6412700a2d636f736d6f7331706b707472653766646b6c366766727a6c65736a6a766878686c63337234676d6d6b38727336122d636f736d6f7331717970717870713971637273737a673270767871367273307a716733797963356c7a763778751a100a0575636f736d12073132333435363712650a4e0a460a1f2f636f736d6f732e63727970746f2e736563703235366b312e5075624b657912230a21034f04181eeba35391b858633a765c4a0c189697b40d216354d50890d350c7029012040a02080112130a0d0a0575636f736d12043230303010c09a0c1a0c73696d642d74657374696e672001",
    );
    let cosmos_sig = hex(
        "c9dd20e07464d3a688ff4b710b1fbc027e495e797cfa0b4804da2ed117959227772de059808f765aa29b8f92edf30f4c2c5a438e30d3fe6897daa7141e3ce6f9",
    );
    assert_eq!(
        crypto::secp256k1_verify(&sha256(&msg), &cosmos_sig, &cosmos_key),
        crypto::VALID
    );
    // Malformed input: cosmwasm-crypto's error codes.
    assert_eq!(
        crypto::secp256k1_verify(&hash[..31], &sig, &key),
        crypto::INVALID_HASH_FORMAT
    );
    assert_eq!(
        crypto::secp256k1_verify(&hash, &sig[..63], &key),
        crypto::INVALID_SIGNATURE_FORMAT
    );
    assert_eq!(
        crypto::secp256k1_verify(&hash, &sig, &key[..33]),
        crypto::INVALID_PUBKEY_FORMAT
    );
    assert_eq!(
        crypto::secp256k1_verify(&hash, &[0; 64], &key),
        crypto::GENERIC_ERROR
    );
    let mut off_curve = key.clone();
    off_curve[64] ^= 1;
    assert_eq!(
        crypto::secp256k1_verify(&hash, &sig, &off_curve),
        crypto::GENERIC_ERROR
    );
}

#[test]
fn secp256k1_recovers_as_cosmwasm_crypto() {
    // @cosmjs vector (recovery parameter 1).
    let expected = hex(
        "044a071e8a6e10aada2b8cf39fa3b5fb3400b04e99ea8ae64ceea1a977dbeaf5d5f8c8fbd10b71ab14cd561f7df8eb6da50f8a8d81ba564342244d26d1d4211595",
    );
    let sig = hex(
        "45c0b7f8c09a9e1f1cea0c25785594427b6bf8f9f878a8af0b1abbb48e16d0920d8becd0c220f67c51217eecfd7184ef0732481c843857e6bc7fc095c4f6b788",
    );
    assert_eq!(
        crypto::secp256k1_recover_pubkey(&hex(K1_HASH), &sig, 1),
        Ok(expected)
    );
    // Botan's high-S vector: recovered after normalizing S and flipping the parity.
    let expected = hex(
        "04F3F8BB913AA68589A2C8C607A877AB05252ADBD963E1BE846DDEB8456942AEDCA2ED51F08CA3EF3DAC0A7504613D54CD539FC1B3CBC92453CD704B6A2D012B2C",
    );
    let sig = hex(
        "E30F2E6A0F705F4FB5F8501BA79C7C0D3FAC847F1AD70B873E9797B17B89B39081F1A4457589F30D76AB9F89E748A68C8A94C30FE0BAC8FB5C0B54EA70BF6D2F",
    );
    assert_eq!(
        crypto::secp256k1_recover_pubkey(&[0xff; 32], &sig, 0),
        Ok(expected)
    );
    assert_eq!(
        crypto::secp256k1_recover_pubkey(&[0xff; 32], &sig, 2),
        Err(crypto::INVALID_RECOVERY_PARAM)
    );
    assert_eq!(
        crypto::secp256k1_recover_pubkey(&[0xff; 31], &sig, 0),
        Err(crypto::INVALID_HASH_FORMAT)
    );
    assert_eq!(
        crypto::secp256k1_recover_pubkey(&[0xff; 32], &sig[..10], 0),
        Err(crypto::INVALID_SIGNATURE_FORMAT)
    );
    assert_eq!(
        crypto::secp256k1_recover_pubkey(&[0xff; 32], &[0; 64], 0),
        Err(crypto::GENERIC_ERROR)
    );
}

#[test]
fn secp256r1_verifies_and_recovers() {
    // `secp256r1_tests.json`, first entry (NIST CAVP).
    let msg = hex(
        "5905238877c77421f73e43ee3da6f2d9e2ccad5fc942dcec0cbd25482935faaf416983fe165b1a045ee2bcd2e6dca3bdf46c4310a7461f9a37960ca672d3feb5473e253605fb1ddfd28065b53cb5858a8ad28175bf9bd386a5e471ea7a65c17cc934a9d791e91491eb3754d03799790fe2d308d16146d5c9b0d0debd97d79ce8",
    );
    let key = hex(
        "041ccbe91c075fc7f4f033bfa248db8fccd3565de94bbfb12f3c59ff46c271bf83ce4014c68811f9a21a1fdb2c0e6113e06db7ca93b7404e78dc7ccd5ca89a4ca9",
    );
    let sig = hex(
        "f3ac8061b514795b8843e3d6629527ed2afd6b1f6a555a7acabb5e6f79c8c2ac8bf77819ca05a6b2786c76262bf7371cef97b218e96f175a3ccdda2acc058903",
    );
    let hash = sha256(&msg);
    assert_eq!(crypto::secp256r1_verify(&hash, &sig, &key), crypto::VALID);
    assert_eq!(
        crypto::secp256r1_verify(&sha256(b"other"), &sig, &key),
        crypto::INVALID
    );
    // The same bytes are not a secp256k1 signature by that key.
    assert_ne!(crypto::secp256k1_verify(&hash, &sig, &key), crypto::VALID);
    let recovered: Vec<_> = (0..2)
        .filter_map(|p| crypto::secp256r1_recover_pubkey(&hash, &sig, p).ok())
        .collect();
    assert!(recovered.contains(&key), "{recovered:?}");
    assert_eq!(
        crypto::secp256r1_recover_pubkey(&hash, &sig, 4),
        Err(crypto::INVALID_RECOVERY_PARAM)
    );
}

// RFC 8032 test vectors 1 and 2 (cosmwasm-crypto's `ed25519_tests.json`).
const ED_KEY1: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const ED_SIG1: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
const ED_KEY2: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const ED_SIG2: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

#[test]
fn ed25519_single_and_batch() {
    let (k1, s1, k2, s2) = (hex(ED_KEY1), hex(ED_SIG1), hex(ED_KEY2), hex(ED_SIG2));
    assert_eq!(crypto::ed25519_verify(b"", &s1, &k1), crypto::VALID);
    assert_eq!(crypto::ed25519_verify(&[0x72], &s2, &k2), crypto::VALID);
    assert_eq!(crypto::ed25519_verify(&[0x73], &s2, &k2), crypto::INVALID);
    assert_eq!(
        crypto::ed25519_verify(b"", &s1[..63], &k1),
        crypto::INVALID_SIGNATURE_FORMAT
    );
    assert_eq!(
        crypto::ed25519_verify(b"", &s1, &k1[..31]),
        crypto::INVALID_PUBKEY_FORMAT
    );
    let (m1, m2): (&[u8], &[u8]) = (b"", &[0x72]);
    let batch = crypto::ed25519_batch_verify;
    assert_eq!(batch(&[m1, m2], &[&s1, &s2], &[&k1, &k2]), crypto::VALID);
    assert_eq!(batch(&[m2, m1], &[&s1, &s2], &[&k1, &k2]), crypto::INVALID);
    assert_eq!(batch(&[], &[], &[]), crypto::VALID);
    // One message or one key for several signatures.
    assert_eq!(batch(&[m1], &[&s1, &s1], &[&k1, &k1]), crypto::VALID);
    assert_eq!(batch(&[m1, m1], &[&s1, &s1], &[&k1]), crypto::VALID);
    assert_eq!(batch(&[m1, m2], &[&s1], &[&k1]), crypto::BATCH_ERROR);
    assert_eq!(batch(&[m1], &[&s1, &s2], &[&k1]), crypto::BATCH_ERROR);
    assert_eq!(
        batch(&[m1], &[&s1[..5]], &[&k1]),
        crypto::INVALID_SIGNATURE_FORMAT
    );
}

#[test]
fn crypto_imports_charge_and_return_codes() {
    let gas = CwGas::V1;
    let s = GasSchedule::V1;
    let mut ctx = context(10_000_000, BTreeMap::new());
    let mut g = TestGuest::new();
    let (hash, sig, key) = (
        g.region(&hex(K1_HASH)),
        g.region(&hex(K1_SIG)),
        g.region(&hex(K1_KEY)),
    );
    let before = ctx.gas_left;
    assert_eq!(
        call(
            &mut ctx,
            &mut g,
            CwImport::Secp256k1Verify,
            &[hash, sig, key]
        ),
        Ok(Some(0))
    );
    let copies = s.copy_word * (1 + 2 + 3);
    assert_eq!(
        (before - ctx.gas_left) as u64,
        s.host_call + copies + gas.secp256k1_verify
    );
    // With one gas too few, out of gas before verifying.
    ctx.gas_left = (s.host_call + copies + gas.secp256k1_verify - 1) as i64;
    assert_eq!(
        call(
            &mut ctx,
            &mut g,
            CwImport::Secp256k1Verify,
            &[hash, sig, key]
        ),
        Err(Trap::OutOfGas)
    );
    ctx.gas_left = 10_000_000;
    // Over the length limits: a trap, as cosmwasm-vm's region reads.
    let long_hash = g.region(&[0; 33]);
    let r = call(
        &mut ctx,
        &mut g,
        CwImport::Secp256k1Verify,
        &[long_hash, sig, key],
    );
    assert_eq!(
        r,
        Err(Trap::TooLarge {
            what: "message hash",
            len: 33,
            max: 32
        })
    );
    // Recovery: a region with the key (low half), or the code in the high half.
    let sig2 = g.region(&hex("45c0b7f8c09a9e1f1cea0c25785594427b6bf8f9f878a8af0b1abbb48e16d0920d8becd0c220f67c51217eecfd7184ef0732481c843857e6bc7fc095c4f6b788"));
    let ptr = call(
        &mut ctx,
        &mut g,
        CwImport::Secp256k1RecoverPubkey,
        &[hash, sig2, 1],
    )
    .unwrap()
    .unwrap();
    assert!(ptr > 0 && ptr >> 32 == 0);
    assert_eq!(g.read(ptr as u32)[..3], [0x04, 0x4a, 0x07]);
    for (param, code) in [
        (2, crypto::INVALID_RECOVERY_PARAM),
        (256, crypto::INVALID_RECOVERY_PARAM),
    ] {
        let r = call(
            &mut ctx,
            &mut g,
            CwImport::Secp256k1RecoverPubkey,
            &[hash, sig2, param],
        );
        assert_eq!(r, Ok(Some(u64::from(code) << 32)));
    }
    // Batches: sections of messages, signatures and keys.
    let sections = crate::cosmwasm::region::encode_sections;
    let (s1, k1) = (hex(ED_SIG1), hex(ED_KEY1));
    let m = g.region(&sections(&[b"", b""]));
    let sg = g.region(&sections(&[&s1, &s1]));
    let k = g.region(&sections(&[&k1]));
    let before = ctx.gas_left;
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::Ed25519BatchVerify, &[m, sg, k]),
        Ok(Some(0))
    );
    assert!((before - ctx.gas_left) as u64 >= 2 * gas.ed25519_batch_signature);
    let bad = g.region(&[0, 0, 0, 9]);
    let r = call(&mut ctx, &mut g, CwImport::Ed25519BatchVerify, &[m, bad, k]).unwrap_err();
    assert!(r.to_string().contains("malformed sections"), "{r}");
}

#[test]
fn bls_imports_trap_naming_themselves() {
    let mut ctx = context(1_000_000, BTreeMap::new());
    let mut g = TestGuest::new();
    for import in [
        CwImport::Bls12381AggregateG1,
        CwImport::Bls12381AggregateG2,
        CwImport::Bls12381PairingEquality,
        CwImport::Bls12381HashToG1,
        CwImport::Bls12381HashToG2,
    ] {
        let args = vec![0; import.arity()];
        let r = call(&mut ctx, &mut g, import, &args).unwrap_err();
        assert!(r.to_string().contains(import.name()), "{r}");
    }
}

#[test]
fn debug_is_bounded_and_abort_traps_with_the_message() {
    let mut ctx = context(100_000_000, BTreeMap::new());
    let mut g = TestGuest::new();
    let hello = g.region(b"hello");
    assert_eq!(call(&mut ctx, &mut g, CwImport::Debug, &[hello]), Ok(None));
    assert!(ctx.debug_log.is_empty(), "dropped unless kept");
    ctx.keep_debug = true;
    call(&mut ctx, &mut g, CwImport::Debug, &[hello]).unwrap();
    let big = g.region(&vec![b'x'; 65_000]);
    call(&mut ctx, &mut g, CwImport::Debug, &[big]).unwrap();
    call(&mut ctx, &mut g, CwImport::Debug, &[big]).unwrap();
    assert_eq!(
        ctx.debug_log.len(),
        2,
        "the second big message exceeds the bound"
    );
    assert_eq!(ctx.debug_count, 4);
    let too_long = g.alloc(2 << 20 | 1);
    let r = call(&mut ctx, &mut g, CwImport::Debug, &[too_long]);
    assert!(
        matches!(r, Ok(None)),
        "an empty region of large capacity is fine: {r:?}"
    );
    region_set_length(&mut g, too_long, (2 << 20) + 1);
    let r = call(&mut ctx, &mut g, CwImport::Debug, &[too_long]);
    assert_eq!(
        r,
        Err(Trap::TooLarge {
            what: "debug message",
            len: (2 << 20) + 1,
            max: 2 << 20
        })
    );
    let msg = g.region(b"panicked at 'boom'");
    let r = call(&mut ctx, &mut g, CwImport::Abort, &[msg]);
    assert_eq!(r, Err(Trap::Aborted("panicked at 'boom'".into())));
    let long = g.region(&vec![b'y'; 10_000]);
    let Err(Trap::Aborted(m)) = call(&mut ctx, &mut g, CwImport::Abort, &[long]) else {
        panic!()
    };
    assert!(
        m.ends_with("... (10000 bytes)") && m.len() < 4200,
        "{}",
        m.len()
    );
}

/// Sets the length field of the region at `ptr`.
fn region_set_length(g: &mut TestGuest, ptr: u32, length: u32) {
    let at = ptr as usize + 8;
    g.mem[at..at + 4].copy_from_slice(&length.to_le_bytes());
}

/// A querier answering every request with its own bytes reversed, using 1,000 gas.
struct Mirror;

impl Querier for Mirror {
    fn query(
        &mut self,
        request: &[u8],
        gas_limit: u64,
        _pending: &crate::state::Journal,
    ) -> Result<(QuerierResult, u64), Trap> {
        assert!(gas_limit > 0);
        let mut data = request.to_vec();
        data.reverse();
        Ok((SystemResult::Ok(ContractResult::Ok(Binary(data))), 1_000))
    }
}

#[test]
fn query_chain_delegates_and_encodes_the_answer() {
    let mut ctx = context(10_000_000, BTreeMap::new());
    let mut g = TestGuest::new();
    let request = br#"{"bank":{"balance":{"address":"a","denom":"earth"}}}"#;
    let r = g.region(request);
    let ptr = call(&mut ctx, &mut g, CwImport::QueryChain, &[r])
        .unwrap()
        .unwrap();
    let answer: QuerierResult = serde_json::from_slice(&g.read(ptr as u32)).unwrap();
    let SystemResult::Err(SystemError::UnsupportedRequest { kind }) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(kind, "bank.balance");
    let staking = g.region(br#"{"staking":{"all_validators":{}}}"#);
    let ptr = call(&mut ctx, &mut g, CwImport::QueryChain, &[staking])
        .unwrap()
        .unwrap();
    assert_eq!(
        g.read(ptr as u32),
        br#"{"error":{"unsupported_request":{"kind":"staking"}}}"#
    );
    let garbage = g.region(b"{not json");
    let ptr = call(&mut ctx, &mut g, CwImport::QueryChain, &[garbage])
        .unwrap()
        .unwrap();
    let text = String::from_utf8(g.read(ptr as u32)).unwrap();
    assert!(
        text.starts_with(r#"{"error":{"invalid_request":{"error":"#),
        "{text}"
    );
    // The host's answer, and the gas it reports, charged.
    ctx.querier = alloc::boxed::Box::new(Mirror);
    let before = ctx.gas_left;
    let ptr = call(&mut ctx, &mut g, CwImport::QueryChain, &[r])
        .unwrap()
        .unwrap();
    let used = (before - ctx.gas_left) as u64;
    let answer: QuerierResult = serde_json::from_slice(&g.read(ptr as u32)).unwrap();
    let mut reversed = request.to_vec();
    reversed.reverse();
    assert_eq!(
        answer,
        SystemResult::Ok(ContractResult::Ok(Binary(reversed)))
    );
    assert!(used > 1_000 + CwGas::V1.query, "{used}");
    // Longer than 64 KiB: too large.
    let long = g.region(&vec![b' '; 65_537]);
    assert!(matches!(
        call(&mut ctx, &mut g, CwImport::QueryChain, &[long]),
        Err(Trap::TooLarge { .. })
    ));
    // The kind names of NoChain's answers come from the request types.
    let q: types::QueryRequest =
        serde_json::from_slice(br#"{"wasm":{"contract_info":{"contract_addr":"x"}}}"#).unwrap();
    assert_eq!(q.unsupported().as_deref(), Some("wasm.contract_info"));
}

#[test]
fn every_charge_comes_before_its_work() {
    // A write with too little gas for its bytes leaves the journal untouched.
    let mut ctx = context(1_000_000, BTreeMap::new());
    let mut g = TestGuest::new();
    let (k, v) = (g.region(&[1; 32]), g.region(&[2; 32]));
    let s = GasSchedule::V1;
    ctx.gas_left = (s.host_call + 2 * s.storage_write_word - 1) as i64;
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::DbWrite, &[k, v]),
        Err(Trap::OutOfGas)
    );
    assert!(ctx.writes.is_empty());
    ctx.gas_left = (s.host_call + 2 * s.storage_write_word) as i64;
    assert_eq!(call(&mut ctx, &mut g, CwImport::DbWrite, &[k, v]), Ok(None));
    assert_eq!(ctx.gas_left, 0);
    // A read pays for the key, then the value and its copy, then `allocate` uses its own.
    ctx.gas_left = 1_000_000;
    let before = ctx.gas_left;
    let ptr = call(&mut ctx, &mut g, CwImport::DbRead, &[k])
        .unwrap()
        .unwrap();
    assert_eq!(g.read(ptr as u32), [2; 32]);
    let expected = s.host_call
        + s.storage_read
        + s.storage_key_word
        + s.storage_read_word
        + s.copy_word
        + g.alloc_gas as u64;
    assert_eq!((before - ctx.gas_left) as u64, expected);
    // Out of gas inside `allocate` is the call's out of gas.
    ctx.gas_left = (expected - 1) as i64;
    assert_eq!(
        call(&mut ctx, &mut g, CwImport::DbRead, &[k]),
        Err(Trap::OutOfGas)
    );
}

#[test]
fn dispatch_and_finish_are_the_two_halves_of_call() {
    let mut ctx = context(1_000_000, [(ns(b"k"), b"v".to_vec())].into());
    let mut g = TestGuest::new();
    let k = g.region(b"k");
    let step = ctx
        .dispatch(CwImport::DbRead, &[k.into()], &mut g.mem)
        .unwrap();
    let Step::Allocate(pending) = step else {
        panic!("{step:?}")
    };
    assert_eq!((pending.len(), pending.bytes()), (1, &b"v"[..]));
    // A zero pointer, and a region too small, trap.
    assert!(ctx.finish(pending.clone(), 0, &mut g.mem).is_err());
    let small = g.alloc(0);
    let r = ctx.finish(pending.clone(), small, &mut g.mem).unwrap_err();
    assert!(r.to_string().contains("too small"), "{r}");
    let ok = g.alloc(1);
    assert_eq!(ctx.finish(pending, ok, &mut g.mem), Ok(Some(u64::from(ok))));
    assert_eq!(g.read(ok), b"v");
}

proptest::proptest! {
    /// Any import with any arguments over arbitrary memory (with a few well-formed regions
    /// in it, so that calls get past the first checks) returns or traps: it never panics,
    /// and never takes more gas than it had.
    #[test]
    fn dispatch_never_panics(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        which in 0usize..24,
        picks in proptest::collection::vec(0usize..8, 4),
        raw in proptest::collection::vec(proptest::prelude::any::<u32>(), 4),
        gas in 0u64..2_000_000,
    ) {
        let state: BTreeMap<Vec<u8>, Vec<u8>> =
            [(ns(b"a"), b"1".to_vec()), (ns(b"b"), b"2".to_vec())].into();
        let mut ctx = context(gas, state);
        let mut g = TestGuest::new();
        let n = noise.len();
        g.mem[2048..2048 + n].copy_from_slice(&noise);
        // Candidate arguments: well-formed regions, pointers into the noise, raw values.
        let regions = [g.region(b"a"), g.region(&noise[..n.min(40)]), g.region(&[0; 32]), g.alloc(100)];
        let import = CwImport::ALL[which];
        let args: Vec<u64> = (0..import.arity())
            .map(|i| u64::from(match picks[i] {
                0..=3 => regions[picks[i]],
                4 => 2048 + raw[i] % 2048,
                5 => raw[i] % 4,
                _ => raw[i],
            }))
            .collect();
        // A scan first, so that the iterator imports find one.
        let _ = ctx.call(CwImport::DbScan, &[0, 0, 1], &mut g);
        let before = ctx.gas_left;
        let _ = ctx.call(import, &args, &mut g);
        proptest::prop_assert!(ctx.gas_left <= before);
    }

    /// Responses, queries and replies of arbitrary bytes parse or fail, never panic.
    #[test]
    fn result_parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = types::parse_response(&bytes);
        let _ = types::parse_query_result(&bytes);
        let _ = serde_json::from_slice::<types::QueryRequest>(&bytes);
        let _ = serde_json::from_slice::<types::Reply>(&bytes);
    }
}
