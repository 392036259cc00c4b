//! The workload of `synor bench e2e`: blocks of cw20-base token transfers that synor and its
//! peer (cosmwasm-vm) both run, as pure data, so that both sides build the same calls and can
//! be checked against one model.
//!
//! - [`ACCOUNTS`] accounts, [`account`] *i* the bech32 address (prefix `cosmwasm`) of
//!   [`account_seed`] *i*, as cosmwasm-std's `MockApi::addr_make(&format!("account{i}"))`
//!   makes it, so that both `MockApi` and synor's `Bech32Api` accept them.
//! - One cw20-base instance, instantiated by [`instantiate_msg`] (every account starts with
//!   [`INITIAL_BALANCE`]; [`account`] 0 is the minter) in the genesis block, at height
//!   [`INSTANTIATE_HEIGHT`], sent by [`account`] 0.
//! - [`TRANSFERS`] transfers ([`transfers`]) in blocks of [`BLOCK`] ([`blocks`]); transfer
//!   block *b* (from 0) runs at height [`transfer_height`]`(b)` = *b* + 1, each transfer sent
//!   by its `from` account as a `transfer` message ([`transfer_msg`]), transaction index its
//!   place in the block.
//! - The contract's address is [`contract_address`]; a transaction's hash is [`tx_hash`].
//! - Every block's time is [`block_time_nanos`]: [`GENESIS_TIME_SECONDS`] plus
//!   [`BLOCK_SECONDS`] per height, in nanoseconds; its chain id is [`CHAIN_ID`].
//! - After the run, each account's balance is read with [`balance_query`] and
//!   [`parse_balance`], and compared with the other side and with [`expected_balances`].

use k256::sha2::{Digest, Sha256};
use serde::Deserialize;
use synor_core::cosmwasm::{Api, Bech32Api};

use crate::workload::Rng;

/// Where the cw20-base build both sides run is vendored, from the root of a checkout
/// (`build-cosmwasm.sh`'s build of cw20-base 2.0.0; see the README beside it).
pub const CW20_BASE: &str = "tests/contracts/cosmwasm/cw20-base-2.0.0.wasm";

/// Accounts holding the token.
pub const ACCOUNTS: usize = 1_000;

/// Transfers in a run.
pub const TRANSFERS: usize = 10_000;

/// Transfers per block (so a run is [`TRANSFERS`] / `BLOCK` = 10 blocks).
pub const BLOCK: usize = 1_000;

/// Each account's balance after instantiation: large enough that no transfer of a run fails.
pub const INITIAL_BALANCE: u128 = 1_000_000_000;

/// The largest amount of one transfer (amounts are drawn in `1..=MAX_AMOUNT`).
pub const MAX_AMOUNT: u128 = 1_000;

/// The workload's default seed.
pub const SEED: u64 = 0xe2e;

/// The chain id of every block.
pub const CHAIN_ID: &str = "synor-bench";

/// The height of the genesis block, where the token is instantiated.
pub const INSTANTIATE_HEIGHT: u64 = 0;

/// The time of the genesis block, in seconds since the Unix epoch.
pub const GENESIS_TIME_SECONDS: u64 = 1_700_000_000;

/// Seconds between consecutive heights.
pub const BLOCK_SECONDS: u64 = 5;

/// The token's name, symbol and decimals in [`instantiate_msg`].
pub const TOKEN: (&str, &str, u8) = ("Synor Token", "SYN", 6);

/// The 32 bytes behind [`account`] `i`: the SHA-256 of `account{i}` (what `MockApi::addr_make`
/// hashes).
pub fn account_seed(i: usize) -> [u8; 32] {
    Sha256::digest(format!("account{i}").as_bytes()).into()
}

/// The address of account `i`: [`account_seed`] `i` in bech32 with the prefix `cosmwasm`.
pub fn account(i: usize) -> String {
    // 32 bytes under a fixed valid prefix always encode (`Bech32Api` takes 1 to 255 bytes).
    Bech32Api::default()
        .humanize(&account_seed(i))
        .expect("32 bytes encode under the prefix `cosmwasm`")
}

/// The address of the token contract, for the environment of its calls: made as [`account`]
/// is, from the name `cw20-base` (the contract never reads it for a transfer or a balance).
pub fn contract_address() -> String {
    Bech32Api::default()
        .humanize(&Sha256::digest(b"cw20-base"))
        .expect("32 bytes encode under the prefix `cosmwasm`")
}

/// The hash of the transaction at `index` in the block at `height` (cosmwasm-std 3's
/// `TransactionInfo::hash`): the SHA-256 of `{height}/{index}`, a stand-in for the hash of
/// the transaction's bytes. cw20-base 2.x never reads it.
pub fn tx_hash(height: u64, index: u32) -> [u8; 32] {
    Sha256::digest(format!("{height}/{index}").as_bytes()).into()
}

/// The height of transfer block `b` (counted from 0): `b + 1`, the genesis block being 0.
pub fn transfer_height(b: usize) -> u64 {
    INSTANTIATE_HEIGHT + 1 + b as u64
}

/// The time of the block at `height`, in nanoseconds since the Unix epoch.
pub fn block_time_nanos(height: u64) -> u64 {
    (GENESIS_TIME_SECONDS + BLOCK_SECONDS * height) * 1_000_000_000
}

/// cw20-base's `InstantiateMsg` (JSON): [`TOKEN`], every one of the first `accounts`
/// accounts holding [`INITIAL_BALANCE`], [`account`] 0 the minter (no cap), no marketing.
pub fn instantiate_msg(accounts: usize) -> Vec<u8> {
    let (name, symbol, decimals) = TOKEN;
    let initial_balances: Vec<serde_json::Value> = (0..accounts)
        .map(|i| {
            serde_json::json!({
                "address": account(i),
                "amount": INITIAL_BALANCE.to_string(),
            })
        })
        .collect();
    serde_json::json!({
        "name": name,
        "symbol": symbol,
        "decimals": decimals,
        "initial_balances": initial_balances,
        "mint": { "minter": account(0) },
    })
    .to_string()
    .into_bytes()
}

/// One token transfer: `amount` from account `from` to account `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// The sender's account index.
    pub from: usize,
    /// The recipient's account index.
    pub to: usize,
    /// The amount, in the token's smallest unit.
    pub amount: u128,
}

/// `n` transfers among `accounts` accounts, drawn from `seed`: sender and recipient uniform
/// and distinct, amount uniform in `1..=`[`MAX_AMOUNT`]. The same arguments give the same
/// transfers. Empty when there are fewer than two accounts (no transfer can have distinct
/// ends).
pub fn transfers(n: usize, accounts: usize, seed: u64) -> Vec<Transfer> {
    if accounts < 2 {
        return Vec::new();
    }
    let mut rng = Rng::new(seed);
    let accounts = accounts as u64;
    (0..n)
        .map(|_| {
            let from = rng.range(0, accounts);
            // A recipient among the other `accounts - 1`: skip over the sender.
            let mut to = rng.range(0, accounts - 1);
            if to >= from {
                to += 1;
            }
            Transfer {
                from: from as usize,
                to: to as usize,
                amount: u128::from(rng.range(1, MAX_AMOUNT as u64 + 1)),
            }
        })
        .collect()
}

/// `transfers` cut into blocks of `block` (the last one shorter if they do not divide; a
/// `block` of 0 is taken as 1).
pub fn blocks(transfers: &[Transfer], block: usize) -> Vec<Vec<Transfer>> {
    transfers.chunks(block.max(1)).map(<[_]>::to_vec).collect()
}

/// The run's blocks: [`TRANSFERS`] transfers among [`ACCOUNTS`] accounts from `seed`, in
/// blocks of [`BLOCK`].
pub fn workload(seed: u64) -> Vec<Vec<Transfer>> {
    blocks(&transfers(TRANSFERS, ACCOUNTS, seed), BLOCK)
}

/// cw20's `transfer` message (JSON) for `t`, to be sent by [`account`] `t.from`.
pub fn transfer_msg(t: &Transfer) -> Vec<u8> {
    // Bech32 addresses and decimal digits need no JSON escaping.
    format!(
        r#"{{"transfer":{{"recipient":"{}","amount":"{}"}}}}"#,
        account(t.to),
        t.amount
    )
    .into_bytes()
}

/// cw20's `balance` query (JSON) of account `i`.
pub fn balance_query(i: usize) -> Vec<u8> {
    format!(r#"{{"balance":{{"address":"{}"}}}}"#, account(i)).into_bytes()
}

/// The answer to a [`balance_query`]: `{"balance":"123"}`.
#[derive(Deserialize)]
struct BalanceResponse {
    balance: String,
}

/// The balance in an answer to a [`balance_query`] (`{"balance":"123"}`).
///
/// # Errors
/// The answer is not that JSON, or the balance is not a decimal `u128`.
pub fn parse_balance(answer: &[u8]) -> Result<u128, String> {
    let response: BalanceResponse = serde_json::from_slice(answer).map_err(|e| {
        format!(
            "balance answer {:?} is not {{\"balance\":\"<amount>\"}}: {e}",
            String::from_utf8_lossy(answer)
        )
    })?;
    response.balance.parse().map_err(|e| {
        format!(
            "balance {:?} is not a decimal amount: {e}",
            response.balance
        )
    })
}

/// The balances of the first `accounts` accounts after instantiation and `transfers` in
/// order, as cw20-base computes them: a transfer whose amount is 0, that exceeds the sender's
/// balance, or that names an account outside `0..accounts` fails and changes nothing. With
/// [`INITIAL_BALANCE`] and [`MAX_AMOUNT`], no transfer of a run fails.
pub fn expected_balances<'a>(
    accounts: usize,
    transfers: impl IntoIterator<Item = &'a Transfer>,
) -> Vec<u128> {
    let mut balances = vec![INITIAL_BALANCE; accounts];
    for t in transfers {
        if t.amount == 0 || t.from >= accounts || t.to >= accounts {
            continue;
        }
        if let Some(left) = balances[t.from].checked_sub(t.amount) {
            balances[t.from] = left;
            balances[t.to] = balances[t.to].saturating_add(t.amount);
        }
    }
    balances
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_addr_make_of_their_names() {
        // cosmwasm-std's `MockApi::default().addr_make("account0")` (bech32 of the SHA-256).
        let a = account(0);
        assert!(a.starts_with("cosmwasm1"), "{a}");
        assert_eq!(a.len(), "cosmwasm1".len() + 52 + 6);
        assert_eq!(
            Bech32Api::default().canonicalize(&a).unwrap(),
            account_seed(0)
        );
        assert_eq!(
            account_seed(0),
            <[u8; 32]>::from(Sha256::digest(b"account0"))
        );
        let distinct: std::collections::BTreeSet<String> = (0..ACCOUNTS).map(account).collect();
        assert_eq!(distinct.len(), ACCOUNTS);
        assert!(Bech32Api::default().validate(&account(999)).is_ok());
    }

    #[test]
    fn transfers_are_deterministic_distinct_and_in_range() {
        let a = transfers(TRANSFERS, ACCOUNTS, SEED);
        assert_eq!(a, transfers(TRANSFERS, ACCOUNTS, SEED));
        assert_ne!(a, transfers(TRANSFERS, ACCOUNTS, SEED + 1));
        assert_eq!(a.len(), TRANSFERS);
        for t in &a {
            assert_ne!(t.from, t.to);
            assert!(t.from < ACCOUNTS && t.to < ACCOUNTS);
            assert!((1..=MAX_AMOUNT).contains(&t.amount));
        }
        // Both ends reach every part of the range.
        assert!(a.iter().any(|t| t.to == ACCOUNTS - 1));
        assert!(a.iter().any(|t| t.from == 0));
        assert!(transfers(5, 1, SEED).is_empty());
        let two = transfers(100, 2, SEED);
        assert!(two.iter().all(|t| t.from + t.to == 1));
    }

    #[test]
    fn a_run_is_ten_blocks_of_a_thousand() {
        let w = workload(SEED);
        assert_eq!(w.len(), 10);
        assert!(w.iter().all(|b| b.len() == BLOCK));
        assert_eq!(blocks(&transfers(5, 3, 1), 2).len(), 3);
        assert_eq!(blocks(&transfers(5, 3, 1), 0).len(), 5);
    }

    #[test]
    fn messages_are_the_json_cw20_base_reads() {
        let t = Transfer {
            from: 0,
            to: 1,
            amount: 42,
        };
        let msg: serde_json::Value = serde_json::from_slice(&transfer_msg(&t)).unwrap();
        assert_eq!(
            msg,
            serde_json::json!({"transfer": {"recipient": account(1), "amount": "42"}})
        );
        let q: serde_json::Value = serde_json::from_slice(&balance_query(7)).unwrap();
        assert_eq!(q, serde_json::json!({"balance": {"address": account(7)}}));
        let init: serde_json::Value = serde_json::from_slice(&instantiate_msg(3)).unwrap();
        assert_eq!(init["name"], "Synor Token");
        assert_eq!(init["symbol"], "SYN");
        assert_eq!(init["decimals"], 6);
        assert_eq!(init["mint"]["minter"], account(0));
        let balances = init["initial_balances"].as_array().unwrap();
        assert_eq!(balances.len(), 3);
        assert_eq!(balances[2]["address"], account(2));
        assert_eq!(balances[2]["amount"], "1000000000");
    }

    #[test]
    fn balance_answers_parse_and_bad_ones_say_why() {
        assert_eq!(parse_balance(br#"{"balance":"123"}"#), Ok(123));
        assert_eq!(
            parse_balance(br#"{"balance":"340282366920938463463374607431768211455"}"#),
            Ok(u128::MAX)
        );
        assert!(parse_balance(b"").unwrap_err().contains("is not"));
        assert!(parse_balance(br#"{"balance":12}"#).is_err());
        assert!(
            parse_balance(br#"{"balance":"-1"}"#)
                .unwrap_err()
                .contains("decimal")
        );
    }

    #[test]
    fn expected_balances_follow_cw20_semantics() {
        let t = |from, to, amount| Transfer { from, to, amount };
        let b = expected_balances(
            3,
            &[
                t(0, 1, 10),
                t(1, 2, 0),                   // zero: fails
                t(2, 0, INITIAL_BALANCE + 1), // more than held: fails
                t(0, 7, 5),                   // unknown account: fails
                t(2, 1, INITIAL_BALANCE),
            ],
        );
        assert_eq!(
            b,
            [INITIAL_BALANCE - 10, 2 * INITIAL_BALANCE + 10, 0].to_vec()
        );
        let run = workload(SEED);
        let all = expected_balances(ACCOUNTS, run.iter().flatten());
        assert_eq!(all.iter().sum::<u128>(), INITIAL_BALANCE * ACCOUNTS as u128);
        assert!(all.iter().all(|&b| b > INITIAL_BALANCE - 1_000_000));
    }

    #[test]
    fn block_environment() {
        assert_ne!(contract_address(), account(0));
        assert!(Bech32Api::default().validate(&contract_address()).is_ok());
        assert_ne!(tx_hash(1, 0), tx_hash(1, 1));
        assert_eq!(transfer_height(0), 1);
        assert_eq!(transfer_height(9), 10);
        assert_eq!(block_time_nanos(0), 1_700_000_000_000_000_000);
        assert_eq!(block_time_nanos(2), 1_700_000_010_000_000_000);
    }
}
