//! `synor cw ...`: CosmWasm contracts on a node's data directory, with CosmWasm's JSON in and
//! out: `instantiate` (deploys the file, makes a contract in a block of one transaction),
//! `execute`, `query`, and the bank's `send` and `genesis`.
//!
//! Addresses are bech32 with the node's prefix (`cosmwasm1...`); a sender is an address of
//! 32 bytes, 64 hex digits, or a name (its account is sha-256 of the name, as cosmwasm-std's
//! `MockApi::addr_make` makes test addresses).

use serde_json::{Value, json};
use synor_core::block::{Address, Receipt, Transaction};
use synor_core::cosmwasm::Api;
use synor_core::cosmwasm::tx::{self, CwChain, CwInput};
use synor_core::cosmwasm::types::{Coin, Uint128};
use synor_core::digest::Digest;
use synor_host_std::Node;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Gas of a transaction or query unless told.
pub const DEFAULT_GAS: u64 = 10_000_000_000;

/// The account `s` names: a bech32 address of 32 bytes, 64 hex digits, or any other name
/// (sha-256 of it).
///
/// # Errors
/// A bech32 address of another length or chain.
pub fn account(chain: &CwChain, s: &str) -> Result<[u8; 32], Error> {
    if let Ok(bytes) = chain.api.canonicalize(s) {
        return <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| format!("{s}: an account here is 32 bytes, not {}", bytes.len()).into());
    }
    if let Some(id) = Digest::from_hex(s) {
        return Ok(id.0);
    }
    if s.starts_with(&format!("{}1", chain.api.prefix())) {
        return Err(format!("{s}: not a valid {} address", chain.api.prefix()).into());
    }
    use k256::sha2::{Digest as _, Sha256};
    Ok(Sha256::digest(s.as_bytes()).into())
}

/// The contract `s` names (bech32 or 64 hex digits).
///
/// # Errors
/// Neither.
pub fn contract(chain: &CwChain, s: &str) -> Result<Address, Error> {
    if let Some(id) = Digest::from_hex(s) {
        return Ok(id);
    }
    let bytes = chain
        .api
        .canonicalize(s)
        .map_err(|e| format!("{s}: not a contract address: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(Digest)
        .map_err(|_| format!("{s}: a contract address is 32 bytes").into())
}

/// Coins written as `100earth,5moon`.
///
/// # Errors
/// A coin without an amount or a denomination.
pub fn coins(s: &str) -> Result<Vec<Coin>, Error> {
    s.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let c = c.trim();
            let digits = c.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(c.len());
            let (amount, denom) = c.split_at(digits);
            let amount: u128 = amount.parse().map_err(|_| {
                format!("`{c}`: a coin is an amount then a denomination, e.g. 100earth")
            })?;
            if denom.is_empty() {
                return Err(format!("`{c}`: no denomination").into());
            }
            Ok(Coin {
                denom: denom.into(),
                amount: Uint128(amount),
            })
        })
        .collect()
}

/// `msg` checked to be JSON, as bytes.
///
/// # Errors
/// It is not JSON.
pub fn message(msg: &str) -> Result<Vec<u8>, Error> {
    serde_json::from_str::<Value>(msg).map_err(|e| format!("--msg is not JSON: {e}"))?;
    Ok(msg.as_bytes().to_vec())
}

/// A transaction `entry` of `sender` to `to` with `msg` and `funds`.
///
/// # Errors
/// Too many coins.
pub fn transaction(
    to: Address,
    entry: &str,
    sender: [u8; 32],
    msg: Vec<u8>,
    funds: Vec<Coin>,
    gas: u64,
) -> Result<Transaction, Error> {
    Ok(Transaction {
        contract: to,
        entry: entry.into(),
        caller: sender,
        input: CwInput { msg, funds }.encode()?,
        gas,
        access: None,
    })
}

/// Runs `tx` in a block of its own on `node`: what the contract answered, as JSON, or the
/// transaction's failure as an error.
///
/// # Errors
/// The transaction failed (its receipt's reason), or the node did.
pub fn run(node: &mut Node, tx: Transaction) -> Result<Value, Error> {
    let chain = node.config().cosmwasm.clone();
    let out = node.execute_block([tx])?;
    let receipt = &out.receipts[0];
    if let Some(trap) = &receipt.trap {
        return Err(format!(
            "the transaction failed in block {} (gas used {}): {trap}",
            out.height, receipt.gas_used
        )
        .into());
    }
    let mut value = response(&chain, receipt);
    value["height"] = out.height.into();
    Ok(value)
}

/// A successful receipt as JSON: gas, data (base64), events with their attributes, and the
/// contracts made.
pub fn response(chain: &CwChain, r: &Receipt) -> Value {
    use base64::Engine as _;
    let events: Vec<Value> = r
        .events
        .iter()
        .map(|e| {
            let attributes: Value = serde_json::from_slice(&e.data).unwrap_or(Value::Null);
            json!({"type": String::from_utf8_lossy(&e.topic), "attributes": attributes})
        })
        .collect();
    let created: Vec<String> = r
        .created
        .iter()
        .map(|c| chain.address(c.address.as_bytes()))
        .collect();
    json!({
        "gas_used": r.gas_used,
        "data": base64::engine::general_purpose::STANDARD.encode(&r.return_data),
        "events": events,
        "created": created,
    })
}

/// `query` of `contract` with `msg`: the contract's answer, parsed.
///
/// # Errors
/// The contract's error, or the node's.
pub fn query(node: &mut Node, contract: &Address, msg: &[u8], gas: u64) -> Result<Value, Error> {
    let out = node.query_cosmwasm(contract, msg, gas)?;
    let answer = out.result.map_err(|e| format!("the query failed: {e}"))?;
    Ok(serde_json::from_slice(&answer)?)
}

/// The bank transaction `entry` (`send` to `to`, or `genesis` for `accounts`) of `sender`.
///
/// # Errors
/// Too many coins.
pub fn bank(
    sender: [u8; 32],
    entry: &str,
    msg: &Value,
    funds: Vec<Coin>,
    gas: u64,
) -> Result<Transaction, Error> {
    let input = CwInput {
        msg: msg.to_string().into_bytes(),
        funds,
    };
    Ok(tx::bank_transaction(sender, entry, &input, gas)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coins_and_accounts_parse_and_say_what_is_wrong() {
        let c = coins("100earth, 5moon").unwrap();
        assert_eq!((c[0].amount.0, c[1].denom.as_str()), (100, "moon"));
        assert!(
            coins("earth")
                .unwrap_err()
                .to_string()
                .contains("amount then")
        );
        assert!(
            coins("12")
                .unwrap_err()
                .to_string()
                .contains("no denomination")
        );
        let chain = CwChain::default();
        let alice = account(&chain, "alice").unwrap();
        let human = chain.address(&alice);
        assert_eq!(account(&chain, &human).unwrap(), alice);
        assert!(account(&chain, "cosmwasm1xyz").is_err());
        assert!(contract(&chain, "nothing").is_err());
        assert!(message("{").is_err());
    }
}
