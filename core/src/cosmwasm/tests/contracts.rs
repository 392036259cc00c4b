//! Real CosmWasm contracts (the vendored cw20-base and cw4-stake builds) run on wasmi through
//! this layer, as a host would wire it: every import through `CwContext::dispatch` and
//! `finish`, entry points through `call_entry`, responses through `parse_response`.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use wasmi::{Caller, Engine, FuncType, Instance, Linker, Module, Store, Val, ValType};

use super::units::vendored;
use crate::abi::Trap;
use crate::cosmwasm::types::*;
use crate::cosmwasm::{
    Api, Bech32Api, CwContext, CwImport, CwInstance, Entry, Guest, Step, call_entry, check,
};
use crate::digest::Digest;

#[derive(Debug)]
struct HostTrap(Trap);

impl core::fmt::Display for HostTrap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl wasmi::errors::HostError for HostTrap {}

struct Host {
    ctx: CwContext,
    memory: Option<wasmi::Memory>,
}

fn trap_of(e: wasmi::Error) -> Trap {
    match e.downcast_ref::<HostTrap>() {
        Some(HostTrap(t)) => t.clone(),
        None => Trap::Host(format!("wasmi: {e}")),
    }
}

fn ty(t: crate::abi::Ty) -> ValType {
    match t {
        crate::abi::Ty::I32 => ValType::I32,
        crate::abi::Ty::I64 => ValType::I64,
    }
}

/// One import as a wasmi host function: dispatch, then `allocate` and finish if asked.
fn host_call(
    caller: &mut Caller<'_, Host>,
    import: CwImport,
    params: &[Val],
) -> Result<Option<u64>, Trap> {
    let args: Vec<u64> = params
        .iter()
        .map(|v| u64::from(v.i32().unwrap_or(0) as u32))
        .collect();
    let memory = caller
        .data()
        .memory
        .ok_or_else(|| Trap::Host("no memory".into()))?;
    let step = {
        let (bytes, host) = memory.data_and_store_mut(&mut *caller);
        let mut view: &mut [u8] = bytes;
        host.ctx.dispatch(import, &args, &mut view)?
    };
    match step {
        Step::Done(result) => Ok(result),
        Step::Allocate(pending) => {
            let allocate = caller
                .get_export("allocate")
                .and_then(|e| e.into_func())
                .ok_or_else(|| Trap::Host("no allocate".into()))?;
            let mut out = [Val::I32(0)];
            allocate
                .call(&mut *caller, &[Val::I32(pending.len() as i32)], &mut out)
                .map_err(trap_of)?;
            let ptr = out[0].i32().unwrap_or(0) as u32;
            let (bytes, host) = memory.data_and_store_mut(&mut *caller);
            let mut view: &mut [u8] = bytes;
            host.ctx.finish(pending, ptr, &mut view)
        }
    }
}

fn linker(engine: &Engine) -> Linker<Host> {
    let mut linker = Linker::new(engine);
    for import in CwImport::ALL {
        let params: Vec<ValType> = import.params().iter().map(|t| ty(*t)).collect();
        let results: Vec<ValType> = import.results().iter().map(|t| ty(*t)).collect();
        linker
            .func_new(
                "env",
                import.name(),
                FuncType::new(params, results),
                move |mut caller, params, results| {
                    let value = host_call(&mut caller, import, params)
                        .map_err(|t| wasmi::Error::host(HostTrap(t)))?;
                    if let (Some(slot), Some(v)) = (results.first_mut(), value) {
                        *slot = match import.result() {
                            Some(crate::abi::Ty::I64) => Val::I64(v as i64),
                            _ => Val::I32(v as u32 as i32),
                        };
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
    linker
}

/// An instance and its store, as `call_entry` drives them.
struct Running {
    store: Store<Host>,
    instance: Instance,
}

impl Running {
    fn func(&self, name: &str) -> Result<wasmi::Func, Trap> {
        self.instance
            .get_func(&self.store, name)
            .ok_or_else(|| Trap::Host(format!("no export {name}")))
    }

    fn call_i32(&mut self, name: &str, args: &[u32]) -> Result<Option<u32>, Trap> {
        let f = self.func(name)?;
        let args: Vec<Val> = args.iter().map(|a| Val::I32(*a as i32)).collect();
        let mut out: Vec<Val> = f
            .ty(&self.store)
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect();
        f.call(&mut self.store, &args, &mut out).map_err(trap_of)?;
        Ok(out.first().and_then(Val::i32).map(|v| v as u32))
    }
}

impl Guest for Running {
    fn memory(&mut self) -> &mut [u8] {
        let memory = self.store.data().memory.unwrap();
        memory.data_mut(&mut self.store)
    }

    fn allocate(&mut self, size: u32, _gas_left: &mut i64) -> Result<u32, Trap> {
        self.call_i32("allocate", &[size])?
            .ok_or_else(|| Trap::Host("allocate returned nothing".into()))
    }
}

impl CwInstance for Running {
    fn call_export(&mut self, name: &str, args: &[u32], _gas_left: &mut i64) -> Result<u32, Trap> {
        self.call_i32(name, args)?
            .ok_or_else(|| Trap::Host(format!("{name} returned nothing")))
    }

    fn deallocate(&mut self, ptr: u32, _gas_left: &mut i64) -> Result<(), Trap> {
        self.call_i32("deallocate", &[ptr]).map(|_| ())
    }
}

/// A tiny chain: stored contracts by address, one state, bech32 addresses.
struct Chain {
    engine: Engine,
    linker: Linker<Host>,
    api: Bech32Api,
    contracts: BTreeMap<String, Module>,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    height: u64,
}

impl Chain {
    fn new() -> Self {
        let engine = Engine::default();
        let linker = linker(&engine);
        Self {
            engine,
            linker,
            api: Bech32Api::default(),
            contracts: BTreeMap::new(),
            state: BTreeMap::new(),
            height: 100,
        }
    }

    /// The address made from `name`, as `MockApi::addr_make`.
    fn addr(&self, name: &str) -> String {
        use k256::sha2::{Digest as _, Sha256};
        self.api.humanize(&Sha256::digest(name.as_bytes())).unwrap()
    }

    fn deploy(&mut self, wasm: &[u8], name: &str) -> String {
        check(wasm).unwrap();
        let address = self.addr(name);
        self.contracts
            .insert(address.clone(), Module::new(&self.engine, wasm).unwrap());
        address
    }

    /// The namespace of `address`: its 32-byte canonical form.
    fn id(&self, address: &str) -> Digest {
        let canonical = self.api.canonicalize(address).unwrap();
        Digest(canonical.try_into().unwrap())
    }

    fn env(&self, contract: &str) -> Vec<u8> {
        let env = Env {
            block: BlockInfo {
                height: self.height,
                time: Timestamp(1_700_000_000_000_000_000),
                chain_id: "synor-1".into(),
            },
            transaction: Some(TransactionInfo {
                index: 0,
                hash: None,
            }),
            contract: ContractInfo {
                address: contract.into(),
            },
        };
        to_json(&env).unwrap()
    }

    /// Runs `entry` of `contract`; commits its writes if it returned `ok`. Returns the raw
    /// result and the gas the imports used.
    fn call(
        &mut self,
        contract: &str,
        entry: Entry,
        sender: Option<&str>,
        msg: &[u8],
    ) -> Result<(Vec<u8>, u64), Trap> {
        const LIMIT: u64 = 1 << 40;
        let mut ctx = CwContext::new(self.id(contract), LIMIT, Box::new(self.state.clone()));
        ctx.read_only = entry == Entry::Query;
        let module = self.contracts[contract].clone();
        let mut store = Store::new(&self.engine, Host { ctx, memory: None });
        let instance = self
            .linker
            .instantiate_and_start(&mut store, &module)
            .map_err(trap_of)?;
        store.data_mut().memory = instance.get_memory(&store, "memory");
        let mut running = Running { store, instance };
        let env = self.env(contract);
        let info = sender.map(|s| {
            to_json(&MessageInfo {
                sender: s.into(),
                funds: Vec::new(),
            })
            .unwrap()
        });
        let mut args: Vec<&[u8]> = alloc::vec![&env];
        if let Some(info) = &info {
            args.push(info);
        }
        args.push(msg);
        let mut gas = 0i64;
        let out = call_entry(&mut running, entry, &args, &mut gas)?;
        let ctx = &mut running.store.data_mut().ctx;
        let used = ctx.gas_used(LIMIT);
        let ok = out.starts_with(b"{\"ok\"");
        if ok {
            for (k, v) in core::mem::take(&mut ctx.writes).into_writes() {
                match v {
                    Some(v) => self.state.insert(k, v),
                    None => self.state.remove(&k),
                };
            }
        }
        Ok((out, used))
    }

    fn execute(&mut self, contract: &str, sender: &str, msg: &str) -> ContractResult<Response> {
        let (out, _) = self
            .call(contract, Entry::Execute, Some(sender), msg.as_bytes())
            .unwrap();
        parse_response(&out).unwrap()
    }

    fn query(&mut self, contract: &str, msg: &str) -> String {
        let (out, _) = self
            .call(contract, Entry::Query, None, msg.as_bytes())
            .unwrap();
        match parse_query_result(&out).unwrap() {
            ContractResult::Ok(data) => String::from_utf8(data.0).unwrap(),
            ContractResult::Err(e) => panic!("query failed: {e}"),
        }
    }
}

fn attr<'a>(r: &'a Response, key: &str) -> Option<&'a str> {
    r.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.as_str())
}

#[test]
fn cw20_base_instantiates_transfers_and_answers_queries() {
    let mut chain = Chain::new();
    let token = chain.deploy(&vendored("cw20-base-2.0.0.wasm"), "token");
    let (alice, bob) = (chain.addr("alice"), chain.addr("bob"));
    let init = format!(
        r#"{{"name":"Synor Token","symbol":"SYN","decimals":6,"initial_balances":[{{"address":"{alice}","amount":"1000000"}}],"mint":null,"marketing":null}}"#
    );
    let (out, gas) = chain
        .call(&token, Entry::Instantiate, Some(&alice), init.as_bytes())
        .unwrap();
    assert!(
        matches!(parse_response(&out).unwrap(), ContractResult::Ok(_)),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(gas > 0);
    let r = chain.execute(
        &token,
        &alice,
        &format!(r#"{{"transfer":{{"recipient":"{bob}","amount":"250"}}}}"#),
    );
    let ContractResult::Ok(r) = r else {
        panic!("{r:?}")
    };
    assert_eq!(attr(&r, "action"), Some("transfer"));
    assert_eq!(
        (attr(&r, "from"), attr(&r, "to"), attr(&r, "amount")),
        (Some(alice.as_str()), Some(bob.as_str()), Some("250"))
    );
    assert_eq!(
        chain.query(&token, &format!(r#"{{"balance":{{"address":"{bob}"}}}}"#)),
        r#"{"balance":"250"}"#
    );
    assert_eq!(
        chain.query(&token, &format!(r#"{{"balance":{{"address":"{alice}"}}}}"#)),
        r#"{"balance":"999750"}"#
    );
    let info = chain.query(&token, r#"{"token_info":{}}"#);
    assert_eq!(
        info,
        r#"{"name":"Synor Token","symbol":"SYN","decimals":6,"total_supply":"1000000"}"#
    );
    // The contract's own errors come back as `error` results, and change nothing.
    let r = chain.execute(
        &token,
        &bob,
        &format!(r#"{{"transfer":{{"recipient":"{alice}","amount":"251"}}}}"#),
    );
    let ContractResult::Err(e) = r else {
        panic!("{r:?}")
    };
    assert!(e.contains("Overflow") || e.contains("Cannot Sub"), "{e}");
    // An invalid recipient: addr_validate's error region reaches the contract's error.
    let r = chain.execute(
        &token,
        &alice,
        r#"{"transfer":{"recipient":"cosmwasm1notanaddress","amount":"1"}}"#,
    );
    let ContractResult::Err(e) = r else {
        panic!("{r:?}")
    };
    assert!(e.contains("Error decoding bech32"), "{e}");
    let juno = Bech32Api::new("juno").unwrap().humanize(&[7; 32]).unwrap();
    let r = chain.execute(
        &token,
        &alice,
        &format!(r#"{{"transfer":{{"recipient":"{juno}","amount":"1"}}}}"#),
    );
    assert!(
        matches!(&r, ContractResult::Err(e) if e.contains("Wrong bech32 prefix")),
        "{r:?}"
    );
    assert_eq!(
        chain.query(&token, &format!(r#"{{"balance":{{"address":"{bob}"}}}}"#)),
        r#"{"balance":"250"}"#
    );
    // Iterators: all_accounts walks the balances map.
    let accounts = chain.query(&token, r#"{"all_accounts":{}}"#);
    let mut expected = [alice.clone(), bob.clone()];
    expected.sort();
    assert_eq!(
        accounts,
        format!(r#"{{"accounts":["{}","{}"]}}"#, expected[0], expected[1])
    );
    // A query cannot write: storage is read-only there (cw20-base never tries; the flag is
    // what makes the trap).
    let (out, _) = chain
        .call(&token, Entry::Query, None, br#"{"minter":{}}"#)
        .unwrap();
    assert_eq!(
        parse_query_result(&out).unwrap(),
        ContractResult::Ok(Binary(b"null".to_vec()))
    );
}

#[test]
fn cw20_send_reaches_cw4_stake_through_its_receive_message() {
    let mut chain = Chain::new();
    let token = chain.deploy(&vendored("cw20-base-2.0.0.wasm"), "token");
    let stake = chain.deploy(&vendored("cw4-stake-2.0.0.wasm"), "stake");
    let alice = chain.addr("alice");
    let init = format!(
        r#"{{"name":"Synor Token","symbol":"SYN","decimals":6,"initial_balances":[{{"address":"{alice}","amount":"5000"}}],"mint":null,"marketing":null}}"#
    );
    chain
        .call(&token, Entry::Instantiate, Some(&alice), init.as_bytes())
        .unwrap();
    let init = format!(
        r#"{{"denom":{{"cw20":"{token}"}},"tokens_per_weight":"10","min_bond":"10","unbonding_period":{{"height":5}},"admin":null}}"#
    );
    let (out, _) = chain
        .call(&stake, Entry::Instantiate, Some(&alice), init.as_bytes())
        .unwrap();
    assert!(
        matches!(parse_response(&out).unwrap(), ContractResult::Ok(_)),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // alice sends 300 tokens to the staking contract with a `bond` message.
    let bond = "eyJib25kIjp7fX0="; // {"bond":{}}
    let r = chain.execute(
        &token,
        &alice,
        &format!(r#"{{"send":{{"contract":"{stake}","amount":"300","msg":"{bond}"}}}}"#),
    );
    let ContractResult::Ok(r) = r else {
        panic!("{r:?}")
    };
    assert_eq!(r.messages.len(), 1);
    let sub = &r.messages[0];
    assert_eq!(sub.reply_on, ReplyOn::Never);
    let CosmosMsg::Wasm(WasmMsg::Execute {
        contract_addr,
        msg,
        funds,
    }) = &sub.msg
    else {
        panic!("{:?}", sub.msg)
    };
    assert_eq!((contract_addr, funds.len()), (&stake, 0));
    let receive = String::from_utf8(msg.0.clone()).unwrap();
    assert_eq!(
        receive,
        format!(r#"{{"receive":{{"sender":"{alice}","amount":"300","msg":"{bond}"}}}}"#)
    );
    // The host runs the message: cw4-stake's execute, sent by the token contract.
    let r = chain.execute(&stake, &token, &receive);
    let ContractResult::Ok(r) = r else {
        panic!("{r:?}")
    };
    assert_eq!(attr(&r, "action"), Some("bond"));
    assert_eq!(
        chain.query(&stake, &format!(r#"{{"staked":{{"address":"{alice}"}}}}"#)),
        format!(r#"{{"stake":"300","denom":{{"cw20":"{token}"}}}}"#)
    );
    assert_eq!(
        chain.query(&stake, &format!(r#"{{"member":{{"addr":"{alice}"}}}}"#)),
        r#"{"weight":30}"#
    );
    // The same receive message from anyone but the token contract is refused.
    let r = chain.execute(&stake, &alice, &receive);
    assert!(matches!(&r, ContractResult::Err(_)), "{r:?}");
    assert_eq!(
        chain.query(&token, &format!(r#"{{"balance":{{"address":"{stake}"}}}}"#)),
        r#"{"balance":"300"}"#
    );
}

/// cw3-fixed-multisig: a proposal carrying messages passes by vote, and its `execute`
/// returns them as the response's messages; the host runs the wasm one on cw20-base as the
/// multisig. Listing proposals backwards uses a descending iterator.
#[test]
fn cw3_multisig_executes_a_passed_proposal_as_messages() {
    let mut chain = Chain::new();
    let token = chain.deploy(&vendored("cw20-base-2.0.0.wasm"), "token");
    let multisig = chain.deploy(&vendored("cw3-fixed-multisig-2.0.0.wasm"), "multisig");
    let (alice, bob, carol) = (chain.addr("alice"), chain.addr("bob"), chain.addr("carol"));
    let init = format!(
        r#"{{"name":"Synor Token","symbol":"SYN","decimals":6,"initial_balances":[{{"address":"{multisig}","amount":"1000"}}],"mint":null,"marketing":null}}"#
    );
    chain
        .call(&token, Entry::Instantiate, Some(&alice), init.as_bytes())
        .unwrap();
    let init = format!(
        r#"{{"voters":[{{"addr":"{alice}","weight":1}},{{"addr":"{bob}","weight":1}}],"threshold":{{"absolute_count":{{"weight":2}}}},"max_voting_period":{{"time":3600}}}}"#
    );
    let (out, _) = chain
        .call(&multisig, Entry::Instantiate, Some(&alice), init.as_bytes())
        .unwrap();
    assert!(
        matches!(parse_response(&out).unwrap(), ContractResult::Ok(_)),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // {"transfer":{"recipient":carol,"amount":"400"}} for the token, and a bank send.
    let transfer = format!(r#"{{"transfer":{{"recipient":"{carol}","amount":"400"}}}}"#);
    let transfer_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&transfer)
    };
    let propose = format!(
        r#"{{"propose":{{"title":"pay carol","description":"","msgs":[{{"wasm":{{"execute":{{"contract_addr":"{token}","msg":"{transfer_b64}","funds":[]}}}}}},{{"bank":{{"send":{{"to_address":"{carol}","amount":[{{"denom":"earth","amount":"7"}}]}}}}}}],"latest":null}}}}"#
    );
    let r = chain.execute(&multisig, &alice, &propose);
    let ContractResult::Ok(r) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (attr(&r, "action"), attr(&r, "status")),
        (Some("propose"), Some("Open"))
    );
    // Not passed yet: executing fails.
    let r = chain.execute(&multisig, &alice, r#"{"execute":{"proposal_id":1}}"#);
    assert!(matches!(&r, ContractResult::Err(_)), "{r:?}");
    let r = chain.execute(
        &multisig,
        &bob,
        r#"{"vote":{"proposal_id":1,"vote":"yes"}}"#,
    );
    let ContractResult::Ok(r) = r else {
        panic!("{r:?}")
    };
    assert_eq!(attr(&r, "status"), Some("Passed"));
    // A second proposal, so that listing backwards has two to order.
    let r = chain.execute(
        &multisig,
        &bob,
        r#"{"propose":{"title":"nothing","description":"","msgs":[],"latest":null}}"#,
    );
    assert!(matches!(&r, ContractResult::Ok(_)), "{r:?}");
    let listed = chain.query(
        &multisig,
        r#"{"reverse_proposals":{"start_before":null,"limit":null}}"#,
    );
    let (second, first) = (
        listed.find(r#""id":2"#).unwrap(),
        listed.find(r#""id":1"#).unwrap(),
    );
    assert!(second < first, "{listed}");
    // Execute: the proposal's messages come back, in order, never replied to.
    let r = chain.execute(&multisig, &carol, r#"{"execute":{"proposal_id":1}}"#);
    let ContractResult::Ok(r) = r else {
        panic!("{r:?}")
    };
    assert_eq!(r.messages.len(), 2);
    assert!(
        r.messages
            .iter()
            .all(|m| m.reply_on == ReplyOn::Never && m.msg.unsupported().is_none())
    );
    let CosmosMsg::Bank(BankMsg::Send { to_address, amount }) = &r.messages[1].msg else {
        panic!()
    };
    assert_eq!((to_address, amount[0].amount), (&carol, Uint128(7)));
    let CosmosMsg::Wasm(WasmMsg::Execute {
        contract_addr, msg, ..
    }) = &r.messages[0].msg
    else {
        panic!()
    };
    assert_eq!(
        (contract_addr, msg.0.as_slice()),
        (&token, transfer.as_bytes())
    );
    // The host runs it as the multisig.
    let msg = String::from_utf8(msg.0.clone()).unwrap();
    let r = chain.execute(&token, &multisig, &msg);
    assert!(matches!(&r, ContractResult::Ok(_)), "{r:?}");
    assert_eq!(
        chain.query(&token, &format!(r#"{{"balance":{{"address":"{carol}"}}}}"#)),
        r#"{"balance":"400"}"#
    );
    assert_eq!(
        chain.query(
            &token,
            &format!(r#"{{"balance":{{"address":"{multisig}"}}}}"#)
        ),
        r#"{"balance":"600"}"#
    );
}
