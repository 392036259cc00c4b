//! CosmWasm contracts nobody on the team wrote, end to end on the node: cw20-base
//! (instantiate, transfer, send to a receiver, mint, burn, allowances, paginated queries),
//! with the results CosmWasm's semantics give, identical in every mode and on every tier.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use synor_core::block::{Address, Mode, Receipt, Transaction};
use synor_core::cosmwasm::tx::{CwChain, CwInput};
use synor_core::tier::TierPolicy;
use synor_host_std::node::BlockOutcome;
use synor_host_std::node::{Node, NodeConfig, NodeError};
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

/// A node with cw20-base, cw4-stake and cw3-fixed-multisig deployed, and names for accounts.
struct Chain {
    node: Node,
    cw20: Address,
    stake: Address,
    multisig: Address,
}

impl Chain {
    fn new(dir: &Path, mode: Mode, tier_policy: TierPolicy) -> Self {
        let mut node = open(dir, mode, tier_policy);
        let cw20 = node.deploy(&contract("cw20-base-2.0.0.wasm")).unwrap();
        let stake = node.deploy(&contract("cw4-stake-2.0.0.wasm")).unwrap();
        let multisig = node
            .deploy(&contract("cw3-fixed-multisig-2.0.0.wasm"))
            .unwrap();
        Self {
            node,
            cw20,
            stake,
            multisig,
        }
    }

    fn block(&mut self, txs: Vec<Transaction>) -> BlockOutcome {
        self.node.execute_block(txs).unwrap()
    }

    /// Runs one transaction in a block of its own; its receipt, and the keys the block wrote.
    fn one(&mut self, tx: Transaction) -> (Receipt, usize) {
        let out = self.block(vec![tx]);
        (out.receipts[0].clone(), out.keys_written)
    }

    fn ok(&mut self, tx: Transaction) -> Receipt {
        let (r, _) = self.one(tx);
        assert_eq!(r.trap, None, "{r:?}");
        r
    }

    /// A transaction that fails with an error containing `what`, writing nothing.
    fn fails(&mut self, tx: Transaction, what: &str) {
        let (r, written) = self.one(tx);
        let trap = r.trap.clone().unwrap_or_default();
        assert!(trap.contains(what), "expected {what:?}: {r:?}");
        assert!(trap.starts_with("contract_error: "), "{trap}");
        assert_eq!(written, 0, "a failed transaction wrote");
        assert!(r.events.is_empty() && r.return_data.is_empty(), "{r:?}");
    }

    /// Proposal `id` of `msgs` made by alice to the cw3 multisig at `multisig`, and voted
    /// for by bob: the transaction that executes it.
    fn passed(&mut self, multisig: Address, id: u64, msgs: Value) -> Transaction {
        let propose =
            json!({"propose": {"title": "t", "description": "", "msgs": msgs, "latest": null}});
        self.ok(cw_tx(multisig, "execute", "alice", &propose));
        let vote = json!({"vote": {"proposal_id": id, "vote": "yes"}});
        self.ok(cw_tx(multisig, "execute", "bob", &vote));
        cw_tx(
            multisig,
            "execute",
            "bob",
            &json!({"execute": {"proposal_id": id}}),
        )
    }

    /// A cw20-base token (instantiated by alice) whose whole supply `holder` holds.
    fn token_held_by(&mut self, holder: &Address, amount: u128) -> Address {
        let init = json!({
            "name": "Synor Token", "symbol": "SYN", "decimals": 6,
            "initial_balances": [{"address": human(holder.as_bytes()), "amount": amount.to_string()}],
            "mint": null,
        });
        self.ok(cw_tx(self.cw20, "instantiate", "alice", &init))
            .created[0]
            .address
    }

    fn query(&mut self, contract: &Address, msg: &Value) -> Value {
        query(&mut self.node, contract, msg)
    }

    fn balance(&mut self, token: &Address, who: &str) -> u128 {
        balance(&mut self.node, token, who)
    }

    fn native(&mut self, who: &[u8], denom: &str) -> u128 {
        let key = synor_core::cosmwasm::tx::balance_key(denom, who);
        let value = self.node.get(&key).unwrap().map(|(v, _)| v);
        synor_core::cosmwasm::tx::balance_value(value.as_deref()).unwrap()
    }
}

fn attr(r: &Receipt, key: &str) -> Option<String> {
    r.events.iter().find_map(|e| {
        let attributes: Vec<Value> = serde_json::from_slice(&e.data).ok()?;
        attributes
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].as_str().unwrap_or_default().to_string())
    })
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            match i <= chunk.len() {
                true => out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char),
                false => out.push('='),
            }
        }
    }
    out
}

fn token_init(minter: &str, balances: &[(&str, u128)]) -> Value {
    let balances: Vec<Value> = balances
        .iter()
        .map(|(who, n)| json!({"address": human(&account(who)), "amount": n.to_string()}))
        .collect();
    json!({
        "name": "Synor Token", "symbol": "SYN", "decimals": 6,
        "initial_balances": balances,
        "mint": {"minter": human(&account(minter))},
    })
}

/// cw20-base on the node gives what CosmWasm's semantics give: balances and total supply
/// after transfers, mints and burns; allowances; paginated account lists; errors for an
/// overdraft, an unauthorized mint and a spend over the allowance, with nothing written.
#[test]
fn cw20_base_behaves_as_cosmwasm_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new(dir.path(), Mode::Sequential, TierPolicy::DEFAULT);
    let init = token_init("alice", &[("alice", 1000), ("bob", 50)]);
    let r = c.ok(cw_tx(c.cw20, "instantiate", "alice", &init));
    let token = r.created[0].address;
    assert_eq!(r.return_data, token.as_bytes());
    let info = c.query(&token, &json!({"token_info": {}}));
    assert_eq!(
        info,
        json!({"name": "Synor Token", "symbol": "SYN", "decimals": 6, "total_supply": "1050"})
    );

    let to = |who: &str| human(&account(who));
    let r = c.ok(cw_tx(
        token,
        "execute",
        "alice",
        &json!({"transfer": {"recipient": to("bob"), "amount": "300"}}),
    ));
    assert_eq!(attr(&r, "action").as_deref(), Some("transfer"));
    assert_eq!(attr(&r, "_contract_address"), Some(human(token.as_bytes())));
    assert_eq!(
        (c.balance(&token, "alice"), c.balance(&token, "bob")),
        (700, 350)
    );

    // An overdraft is the contract's error, and nothing is written.
    c.fails(
        cw_tx(
            token,
            "execute",
            "bob",
            &json!({"transfer": {"recipient": to("alice"), "amount": "351"}}),
        ),
        "Cannot Sub",
    );
    assert_eq!(
        (c.balance(&token, "alice"), c.balance(&token, "bob")),
        (700, 350)
    );

    // Minting: the minter may, anyone else is unauthorized.
    c.ok(cw_tx(
        token,
        "execute",
        "alice",
        &json!({"mint": {"recipient": to("carol"), "amount": "500"}}),
    ));
    c.fails(
        cw_tx(
            token,
            "execute",
            "bob",
            &json!({"mint": {"recipient": to("bob"), "amount": "1"}}),
        ),
        "Unauthorized",
    );
    c.ok(cw_tx(
        token,
        "execute",
        "bob",
        &json!({"burn": {"amount": "50"}}),
    ));
    assert_eq!(c.balance(&token, "carol"), 500);
    assert_eq!(c.balance(&token, "bob"), 300);
    let supply = c.query(&token, &json!({"token_info": {}}))["total_supply"].clone();
    assert_eq!(supply, json!("1500"));

    // Allowances.
    c.ok(cw_tx(
        token,
        "execute",
        "alice",
        &json!({"increase_allowance": {"spender": to("bob"), "amount": "200"}}),
    ));
    let allowance = json!({"allowance": {"owner": to("alice"), "spender": to("bob")}});
    assert_eq!(
        c.query(&token, &allowance),
        json!({"allowance": "200", "expires": {"never": {}}})
    );
    c.ok(cw_tx(token, "execute", "bob", &json!({"transfer_from": {"owner": to("alice"), "recipient": to("carol"), "amount": "150"}})));
    assert_eq!(
        (c.balance(&token, "alice"), c.balance(&token, "carol")),
        (550, 650)
    );
    assert_eq!(c.query(&token, &allowance)["allowance"], json!("50"));
    c.fails(
        cw_tx(token, "execute", "bob", &json!({"transfer_from": {"owner": to("alice"), "recipient": to("bob"), "amount": "51"}})),
        "Cannot Sub",
    );
    c.fails(
        cw_tx(token, "execute", "carol", &json!({"transfer_from": {"owner": to("alice"), "recipient": to("carol"), "amount": "1"}})),
        "No allowance",
    );

    // Paginated account lists: range scans in key order, page after page.
    for i in 0..7 {
        c.ok(cw_tx(
            token,
            "execute",
            "alice",
            &json!({"transfer": {"recipient": to(&format!("user{i}")), "amount": "1"}}),
        ));
    }
    let mut listed = Vec::new();
    let mut start_after = Value::Null;
    loop {
        let page = c.query(
            &token,
            &json!({"all_accounts": {"start_after": start_after, "limit": 3}}),
        );
        let accounts = page["accounts"].as_array().unwrap().clone();
        if accounts.is_empty() {
            break;
        }
        assert!(accounts.len() <= 3);
        start_after = accounts.last().unwrap().clone();
        listed.extend(
            accounts
                .into_iter()
                .map(|a| a.as_str().unwrap().to_string()),
        );
    }
    let mut expected: Vec<String> = ["alice", "bob", "carol"].iter().map(|w| to(w)).collect();
    expected.extend((0..7).map(|i| to(&format!("user{i}"))));
    expected.sort();
    assert_eq!(listed, expected);
}

/// `send` hands tokens to a contract and calls its `receive` (a message of the token's
/// response): cw4-stake bonds them.
#[test]
fn cw20_send_calls_the_receiving_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new(dir.path(), Mode::Sequential, TierPolicy::DEFAULT);
    let token = c
        .ok(cw_tx(
            c.cw20,
            "instantiate",
            "alice",
            &token_init("alice", &[("alice", 5000)]),
        ))
        .created[0]
        .address;
    let stake_init = json!({
        "denom": {"cw20": human(token.as_bytes())}, "tokens_per_weight": "10",
        "min_bond": "10", "unbonding_period": {"height": 5}, "admin": null,
    });
    let stake = c
        .ok(cw_tx(c.stake, "instantiate", "admin", &stake_init))
        .created[0]
        .address;
    let bond = base64(br#"{"bond":{}}"#);
    let send = json!({"send": {"contract": human(stake.as_bytes()), "amount": "300", "msg": bond}});
    let r = c.ok(cw_tx(token, "execute", "alice", &send));
    assert_eq!(attr(&r, "action").as_deref(), Some("send"));
    let staked = c.query(
        &stake,
        &json!({"staked": {"address": human(&account("alice"))}}),
    );
    assert_eq!(staked["stake"], json!("300"));
    let member = c.query(
        &stake,
        &json!({"member": {"addr": human(&account("alice"))}}),
    );
    assert_eq!(member, json!({"weight": 30}));
    assert_eq!(c.balance(&token, "alice"), 4700);
    let stake_balance = query(
        &mut c.node,
        &token,
        &json!({"balance": {"address": human(stake.as_bytes())}}),
    );
    assert_eq!(stake_balance, json!({"balance": "300"}));
    // A receiver that fails fails the send: nothing moves.
    let junk = base64(br#"{"no_such_message":{}}"#);
    let send = json!({"send": {"contract": human(stake.as_bytes()), "amount": "5", "msg": junk}});
    let (r, written) = c.one(cw_tx(token, "execute", "alice", &send));
    assert!(r.trap.is_some() && written == 0, "{r:?}");
    assert_eq!(c.balance(&token, "alice"), 4700);
}

/// A multisig's passed proposal runs its messages: a cw20 transfer (`WasmMsg::Execute`) and
/// a native token transfer (`BankMsg::Send`) from the multisig's own balance, which funds
/// sent with a bank transaction filled.
#[test]
fn proposals_run_wasm_and_bank_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new(dir.path(), Mode::Sequential, TierPolicy::DEFAULT);
    let to = |who: &str| human(&account(who));
    let coins = |n: u128| {
        vec![synor_core::cosmwasm::types::Coin {
            denom: "earth".into(),
            amount: synor_core::cosmwasm::types::Uint128(n),
        }]
    };
    // Block 1: genesis balances.
    let genesis = CwInput {
        msg: json!({"accounts": [to("alice")]}).to_string().into_bytes(),
        funds: coins(100),
    };
    let genesis =
        synor_core::cosmwasm::tx::bank_transaction(account("alice"), "genesis", &genesis, GAS)
            .unwrap();
    c.ok(genesis.clone());
    assert_eq!(c.native(&account("alice"), "earth"), 100);
    // Genesis only in block 1.
    let (r, _) = c.one(genesis);
    assert!(r.trap.unwrap().contains("only in block 1"));
    let init = json!({
        "voters": [{"addr": to("alice"), "weight": 1}, {"addr": to("bob"), "weight": 1}],
        "threshold": {"absolute_count": {"weight": 2}},
        "max_voting_period": {"time": 3600},
    });
    let multisig = c
        .ok(cw_tx(c.multisig, "instantiate", "alice", &init))
        .created[0]
        .address;
    let token = c.token_held_by(&multisig, 1000);
    // Native funds to the multisig: a bank send; more than alice has fails.
    let send = |n| {
        let input = CwInput {
            msg: json!({"to": human(multisig.as_bytes())})
                .to_string()
                .into_bytes(),
            funds: coins(n),
        };
        synor_core::cosmwasm::tx::bank_transaction(account("alice"), "send", &input, GAS).unwrap()
    };
    c.fails(send(101), "insufficient funds");
    c.ok(send(60));
    assert_eq!(c.native(&account("alice"), "earth"), 40);
    assert_eq!(c.native(multisig.as_bytes(), "earth"), 60);

    let transfer = base64(
        json!({"transfer": {"recipient": to("carol"), "amount": "400"}})
            .to_string()
            .as_bytes(),
    );
    let propose = json!({"propose": {"title": "pay carol", "description": "", "msgs": [
        {"wasm": {"execute": {"contract_addr": human(token.as_bytes()), "msg": transfer, "funds": []}}},
        {"bank": {"send": {"to_address": to("carol"), "amount": [{"denom": "earth", "amount": "7"}]}}},
    ], "latest": null}});
    let r = c.ok(cw_tx(multisig, "execute", "alice", &propose));
    assert_eq!(attr(&r, "status").as_deref(), Some("Open"));
    c.fails(
        cw_tx(
            multisig,
            "execute",
            "alice",
            &json!({"execute": {"proposal_id": 1}}),
        ),
        "",
    );
    c.ok(cw_tx(
        multisig,
        "execute",
        "bob",
        &json!({"vote": {"proposal_id": 1, "vote": "yes"}}),
    ));
    c.ok(cw_tx(
        multisig,
        "execute",
        "carol",
        &json!({"execute": {"proposal_id": 1}}),
    ));
    assert_eq!(c.balance(&token, "carol"), 400);
    assert_eq!(c.native(&account("carol"), "earth"), 7);
    assert_eq!(c.native(multisig.as_bytes(), "earth"), 53);

    // A proposal that instantiates a contract (`WasmMsg::Instantiate`, by code number).
    let number = c.node.code_number(&c.cw20).unwrap().unwrap();
    assert_eq!(number, 1);
    let child = base64(token_init("dave", &[("dave", 77)]).to_string().as_bytes());
    let instantiate = json!([
        {"wasm": {"instantiate": {"admin": human(multisig.as_bytes()), "code_id": number, "msg": child, "funds": [], "label": "child"}}},
    ]);
    let execute = c.passed(multisig, 2, instantiate);
    let r = c.ok(execute);
    assert_eq!(r.created.len(), 1, "{r:?}");
    assert_eq!(r.created[0].creator, multisig);
    let made = r.created[0].address;
    assert_eq!(c.balance(&made, "dave"), 77);
    // An unknown code number fails the proposal's execution, which makes nothing.
    let unknown = json!([
        {"wasm": {"instantiate": {"admin": null, "code_id": 99, "msg": child, "funds": [], "label": "x"}}},
    ]);
    let execute = c.passed(multisig, 3, unknown);
    c.fails(execute, "no code with id 99");

    // The child's admin (the multisig) migrates it (`WasmMsg::Migrate`) to cw20-base again,
    // whose `migrate` checks and records the version; its balances stay.
    let mut proposal = 4;
    let mut pass = |c: &mut Chain, msgs: Value| {
        let execute = c.passed(multisig, proposal, msgs);
        proposal += 1;
        c.one(execute).0
    };
    let migrate = |to: &Address| json!([{"wasm": {"migrate": {"contract_addr": human(to.as_bytes()), "new_code_id": number, "msg": base64(b"{}")}}}]);
    let r = pass(&mut c, migrate(&made));
    assert_eq!(r.trap, None, "{r:?}");
    assert_eq!(c.balance(&made, "dave"), 77);
    // A contract without an admin cannot be migrated: the first token's admin is none.
    let r = pass(&mut c, migrate(&token));
    assert!(r.trap.unwrap().contains("is not the admin"));
    // Clearing the admin stops migrations too.
    let clear = json!([{"wasm": {"clear_admin": {"contract_addr": human(made.as_bytes())}}}]);
    assert_eq!(pass(&mut c, clear).trap, None);
    let r = pass(&mut c, migrate(&made));
    assert!(r.trap.unwrap().contains("is not the admin"));
}

/// CosmWasm modules are checked at deployment as CosmWasm checks them: an older interface
/// version is refused naming it, an unknown import naming it; nothing refused is stored;
/// `interface_version_8` contracts are accepted.
#[test]
fn cosmwasm_modules_are_checked_at_deployment_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = open(dir.path(), Mode::Sequential, TierPolicy::DEFAULT);
    let refused = |n: &mut Node, wasm: &[u8]| -> String {
        let err = n.deploy(wasm).unwrap_err();
        assert!(matches!(err, NodeError::RejectedCosmWasm(_)), "{err}");
        let id = synor_core::digest::CodeId::of(wasm);
        assert!(
            !n.with_store(|s| s.contains(&id)),
            "a refused module was stored"
        );
        err.to_string()
    };
    let unknown = wat::parse_str(
        r#"(module
            (import "env" "read_everything" (func (param i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "interface_version_8"))
            (func (export "allocate") (param i32) (result i32) (i32.const 0))
            (func (export "deallocate") (param i32)))"#,
    )
    .unwrap();
    assert!(refused(&mut n, &unknown).contains("env.read_everything"));
    // Said on stderr when the corpus is missing.
    if let Some(corpus) = synor_tests::corpus_dir() {
        let old = corpus.join("wasmd/benchmarks__cw20_base@2021-10-08_de84b07e.wasm");
        let message = refused(&mut n, &std::fs::read(&old).unwrap());
        assert!(message.contains("interface_version_7"), "{message}");
    }
    for name in [
        "cw20-base-2.0.0.wasm",
        "cw4-stake-2.0.0.wasm",
        "cw3-fixed-multisig-2.0.0.wasm",
    ] {
        n.deploy(&contract(name)).unwrap();
    }
}

/// Submessages run in checkpoints of their own, and `reply` hears how they went: cosmwasm's
/// `reflect` contract (from the corpus) sends a cw20 transfer that succeeds and one that
/// fails; the failed one's writes are reverted and the transaction stands; a failure the
/// contract does not catch fails the whole transaction. Its queries through the chain reach
/// other contracts (smart and raw) and the bank.
#[test]
fn submessages_reply_and_queries_reach_the_chain() {
    let Some(corpus) = synor_tests::corpus_dir() else {
        return;
    };
    let reflect_code =
        std::fs::read(corpus.join("wasmd/e2e__reflect_2_2@2024-11-07_447c907e.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::new(dir.path(), Mode::Sequential, TierPolicy::DEFAULT);
    let reflect_code = c.node.deploy(&reflect_code).unwrap();
    let to = |who: &str| human(&account(who));
    let reflect = c
        .ok(cw_tx(reflect_code, "instantiate", "alice", &json!({})))
        .created[0]
        .address;
    let token = c.token_held_by(&reflect, 100);
    let transfer = |n: u32| {
        let msg = base64(
            json!({"transfer": {"recipient": to("bob"), "amount": n.to_string()}})
                .to_string()
                .as_bytes(),
        );
        json!({"wasm": {"execute": {"contract_addr": human(token.as_bytes()), "msg": msg, "funds": []}}})
    };
    let sub = |id: u64, msg: Value, reply_on: &str| json!({"id": id, "payload": "", "msg": msg, "gas_limit": null, "reply_on": reply_on});
    let r = c.ok(cw_tx(
        reflect,
        "execute",
        "alice",
        &json!({"reflect_sub_msg": {"msgs": [
            sub(7, transfer(30), "always"),
            sub(8, transfer(500), "error"),
        ]}}),
    ));
    assert!(r.events.iter().any(|e| e.topic == b"wasm"), "{r:?}");
    assert_eq!(c.balance(&token, "bob"), 30);
    let ok = c.query(&reflect, &json!({"sub_msg_result": {"id": 7}}));
    let events = ok["result"]["ok"]["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "wasm"), "{ok}");
    let failed = c.query(&reflect, &json!({"sub_msg_result": {"id": 8}}));
    assert!(
        failed["result"]["error"]
            .as_str()
            .unwrap()
            .contains("Cannot Sub"),
        "{failed}"
    );
    // Not caught: the whole transaction fails, its first transfer too.
    c.fails(
        cw_tx(
            reflect,
            "execute",
            "alice",
            &json!({"reflect_sub_msg": {"msgs": [
                sub(9, transfer(10), "never"),
                sub(10, transfer(500), "success"),
            ]}}),
        ),
        "Cannot Sub",
    );
    assert_eq!(c.balance(&token, "bob"), 30);
    // Unsupported messages are named.
    c.fails(
        cw_tx(reflect, "execute", "alice", &json!({"reflect_msg": {"msgs": [
            {"staking": {"delegate": {"validator": "v", "amount": {"denom": "earth", "amount": "1"}}}}
        ]}})),
        "staking",
    );
    // Queries through the chain: a smart query of the token, a raw read, a balance.
    let smart = json!({"wasm": {"smart": {"contract_addr": human(token.as_bytes()), "msg": base64(json!({"balance": {"address": to("bob")}}).to_string().as_bytes())}}});
    let answer = c.query(&reflect, &json!({"chain": {"request": smart}}));
    let data = answer["data"].as_str().unwrap();
    assert_eq!(data, base64(br#"{"balance":"30"}"#));
    let raw = json!({"raw": {"contract": human(token.as_bytes()), "key": base64(b"token_info")}});
    let answer = c.query(&reflect, &raw);
    assert!(
        answer["data"].as_str().is_some_and(|d| !d.is_empty()),
        "{answer}"
    );
    let bank = json!({"bank": {"balance": {"address": to("alice"), "denom": "earth"}}});
    let answer = c.query(&reflect, &json!({"chain": {"request": bank}}));
    assert_eq!(
        answer["data"].as_str().unwrap(),
        base64(br#"{"amount":{"denom":"earth","amount":"0"}}"#)
    );
}

/// Every tier gives every CosmWasm call the same outcome: cw20-base's instantiate,
/// transfers (an overdraft among them), queries and an out-of-gas call, each on wasmi,
/// Winch and Cranelift, with the same result bytes, gas and writes.
#[test]
fn every_tier_gives_a_cosmwasm_call_the_same_outcome() {
    use std::collections::BTreeMap;
    use synor_core::cosmwasm::{CwContext, Entry};
    use synor_core::instrument::{Limits, instrument};

    let wasm = contract("cw20-base-2.0.0.wasm");
    let limits = Limits::default();
    let module =
        std::sync::Arc::new(instrument(&wasm, &synor_core::gas::GasSchedule::V1, &limits).unwrap());
    let engines = synor_host_wasmtime::engine::engines(&limits, None).unwrap();
    let compiled: Vec<_> = engines
        .iter()
        .map(|e| e.compile(&module).unwrap())
        .collect();
    let chain = CwChain::default();
    let me = synor_core::digest::Digest([9; 32]);
    let env = serde_json::to_vec(&chain.env(&me, 7, Some(0))).unwrap();
    let info = |who: &str| {
        json!({"sender": human(&account(who)), "funds": []})
            .to_string()
            .into_bytes()
    };
    let init = token_init("alice", &[("alice", 1000)])
        .to_string()
        .into_bytes();
    let transfer = |n: u32| {
        json!({"transfer": {"recipient": human(&account("bob")), "amount": n.to_string()}})
            .to_string()
            .into_bytes()
    };
    let calls: Vec<(Entry, Vec<Vec<u8>>, u64)> = vec![
        (
            Entry::Instantiate,
            vec![env.clone(), info("alice"), init],
            GAS,
        ),
        (
            Entry::Execute,
            vec![env.clone(), info("alice"), transfer(300)],
            GAS,
        ),
        (
            Entry::Execute,
            vec![env.clone(), info("alice"), transfer(800)],
            GAS,
        ),
        (
            Entry::Query,
            vec![env.clone(), br#"{"all_accounts":{}}"#.to_vec()],
            GAS,
        ),
        (
            Entry::Execute,
            vec![env.clone(), info("alice"), transfer(5)],
            150_000,
        ),
        (
            Entry::Execute,
            vec![env.clone(), info("alice"), b"{\"nonsense\"".to_vec()],
            GAS,
        ),
    ];
    let mut outcomes = Vec::new();
    for tier in &compiled {
        let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut seen = Vec::new();
        for (entry, args, gas) in &calls {
            let mut ctx = CwContext::new(me, *gas, Box::new(state.clone()));
            ctx.read_only = *entry == Entry::Query;
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let outcome = tier.call_cosmwasm(&mut ctx, *entry, &args).unwrap();
            let writes: Vec<_> = std::mem::take(&mut ctx.writes).into_writes().collect();
            if outcome.result.is_ok() {
                for (k, v) in &writes {
                    match v {
                        Some(v) => state.insert(k.clone(), v.clone()),
                        None => state.remove(k),
                    };
                }
            }
            seen.push((outcome, writes));
        }
        outcomes.push((tier.tier(), seen));
    }
    let (_, cold) = &outcomes[0];
    assert!(cold[0].0.result.is_ok() && cold[1].0.result.is_ok());
    let overdraft = String::from_utf8_lossy(cold[2].0.result.as_ref().unwrap()).into_owned();
    assert!(overdraft.contains("Cannot Sub"), "{overdraft}");
    assert_eq!(cold[4].0.result, Err(synor_core::abi::Trap::OutOfGas));
    assert_eq!(cold[4].0.gas_used, 150_000);
    for (tier, seen) in &outcomes[1..] {
        assert_eq!(seen, cold, "{tier} differs from the cold tier");
    }
}

/// Blocks of CosmWasm transactions (cw20 transfers, overdrafts, mints by the minter and by
/// others, burns, allowances spent, sends to a staking contract, bank sends) give the same
/// receipts, state diffs and final state in every mode and whichever tiers run them.
#[test]
fn cosmwasm_blocks_agree_in_every_mode_and_on_every_tier() {
    const EAGER: TierPolicy = TierPolicy {
        gas_per_byte: [0, 0],
        min_calls: [0, 1],
    };
    let names: Vec<String> = (0..12).map(|i| format!("user{i}")).collect();
    let run = |mode: Mode,
               policy: TierPolicy|
     -> (
        Vec<(synor_core::Digest, synor_core::Digest)>,
        synor_core::Digest,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Chain::new(dir.path(), mode, policy);
        let to = |who: &str| human(&account(who));
        let balances: Vec<(&str, u128)> = names.iter().map(|n| (n.as_str(), 1_000)).collect();
        let mut first = vec![cw_tx(
            c.cw20,
            "instantiate",
            "user0",
            &token_init("user0", &balances),
        )];
        let genesis = CwInput {
            msg: json!({"accounts": names.iter().map(|n| to(n)).collect::<Vec<_>>()})
                .to_string()
                .into_bytes(),
            funds: vec![synor_core::cosmwasm::types::Coin {
                denom: "earth".into(),
                amount: synor_core::cosmwasm::types::Uint128(50),
            }],
        };
        first.push(
            synor_core::cosmwasm::tx::bank_transaction(account("user0"), "genesis", &genesis, GAS)
                .unwrap(),
        );
        let out = c.block(first);
        let token = out.receipts[0].created[0].address;
        let mut digests = vec![(out.receipts_digest, out.diff_digest)];
        let stake_init = json!({
            "denom": {"cw20": human(token.as_bytes())}, "tokens_per_weight": "10",
            "min_bond": "10", "unbonding_period": {"height": 5}, "admin": null,
        });
        let out = c.block(vec![cw_tx(c.stake, "instantiate", "user0", &stake_init)]);
        let stake = out.receipts[0].created[0].address;
        digests.push((out.receipts_digest, out.diff_digest));
        let mut seed = 7u64;
        for _ in 0..3 {
            let mut txs = Vec::new();
            for _ in 0..40 {
                let r = synor_tests::next(&mut seed);
                let (a, b) = (&names[(r % 12) as usize], &names[((r >> 8) % 12) as usize]);
                let n = (r >> 16) % 400;
                let msg = match (r >> 32) % 7 {
                    0 | 1 => json!({"transfer": {"recipient": to(b), "amount": n.to_string()}}),
                    2 => json!({"mint": {"recipient": to(b), "amount": n.to_string()}}),
                    3 => json!({"burn": {"amount": (n / 4).to_string()}}),
                    4 => json!({"increase_allowance": {"spender": to(b), "amount": n.to_string()}}),
                    5 => {
                        json!({"transfer_from": {"owner": to(b), "recipient": to(a), "amount": (n / 2).to_string()}})
                    }
                    _ => {
                        json!({"send": {"contract": human(stake.as_bytes()), "amount": (10 + n).to_string(), "msg": base64(br#"{"bond":{}}"#)}})
                    }
                };
                txs.push(match (r >> 40) % 10 {
                    0 => {
                        let input = CwInput {
                            msg: json!({"to": to(b)}).to_string().into_bytes(),
                            funds: vec![synor_core::cosmwasm::types::Coin {
                                denom: "earth".into(),
                                amount: synor_core::cosmwasm::types::Uint128(u128::from(n % 30)),
                            }],
                        };
                        synor_core::cosmwasm::tx::bank_transaction(account(a), "send", &input, GAS)
                            .unwrap()
                    }
                    _ => cw_tx(token, "execute", a, &msg),
                });
            }
            let out = c.block(txs);
            assert!(out.receipts.iter().any(|r| r.trap.is_none()));
            assert!(out.receipts.iter().any(|r| r.trap.is_some()));
            digests.push((out.receipts_digest, out.diff_digest));
        }
        c.node.sync().unwrap();
        (digests, c.node.state_digest().unwrap())
    };
    let reference = run(Mode::Sequential, TierPolicy::NEVER);
    for mode in [
        Mode::Sequential,
        Mode::Declared { threads: 2 },
        Mode::Optimistic { threads: 2 },
        Mode::Optimistic { threads: 3 },
    ] {
        for policy in [TierPolicy::DEFAULT, EAGER] {
            assert_eq!(run(mode, policy), reference, "{mode:?} {policy:?}");
        }
    }
}

/// CosmWasm transactions submitted before their block are pre-executed and reused, and the
/// block gives what a node that pre-executed nothing gives.
#[test]
fn pre_executed_cosmwasm_transactions_are_reused_and_change_nothing() {
    let run = |speculate: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Chain::new(
            dir.path(),
            Mode::Optimistic { threads: 2 },
            TierPolicy::DEFAULT,
        );
        let balances: Vec<(String, u128)> = (0..80).map(|i| (format!("user{i}"), 1_000)).collect();
        let balances: Vec<(&str, u128)> = balances.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let token = c
            .ok(cw_tx(
                c.cw20,
                "instantiate",
                "user0",
                &token_init("user0", &balances),
            ))
            .created[0]
            .address;
        let txs: Vec<Transaction> = (0..40)
            .map(|i| {
                // Distinct accounts, except every fifth transfer, which pays the one before.
                let (from, to) = match i % 5 {
                    4 => (format!("user{}", 2 * i), format!("user{}", 2 * i - 1)),
                    _ => (format!("user{}", 2 * i), format!("user{}", 2 * i + 1)),
                };
                cw_tx(token, "execute", &from, &json!({"transfer": {"recipient": human(&account(&to)), "amount": (i * 13 % 700).to_string()}}))
            })
            .collect();
        if speculate {
            for tx in &txs {
                c.node.submit(tx.clone());
            }
            c.node.wait_speculation();
        }
        let out = c.block(txs);
        c.node.sync().unwrap();
        (
            out.reused,
            (out.receipts_digest, out.diff_digest),
            c.node.state_digest().unwrap(),
        )
    };
    let (none, reference, state) = run(false);
    assert_eq!(none, 0);
    let (reused, digests, state_after) = run(true);
    // The transfers that read a balance an earlier one of the block wrote (every fifth) run
    // again; the others stand.
    assert_eq!(reused, 32, "{reused} of 40 pre-executed results reused");
    assert_eq!((digests, state_after), (reference, state));
}
