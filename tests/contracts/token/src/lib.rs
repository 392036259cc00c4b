//! An ERC-20-like token. Input layouts are little-endian; accounts are 32 bytes.
//!
//! | entry | input | returns |
//! |---|---|---|
//! | `init` | supply u64 | — (mints the supply to the caller, once) |
//! | `transfer` | to 32, amount u64 | — |
//! | `transfer_between` | from 32, to 32, amount u64 | — (the benchmark's p2p transfer: `from` must be the caller) |
//! | `approve` | spender 32, amount u64 | — |
//! | `transfer_from` | owner 32, to 32, amount u64 | — |
//! | `balance_of` | account 32 | u64 |
//! | `total_supply` | — | u64 |
//! | `burn` (v2) | amount u64 | — |

use synor_sdk::*;

fn balance_key(account: &Id) -> Vec<u8> {
    let mut k = b"bal:".to_vec();
    k.extend_from_slice(account);
    k
}

fn allowance_key(owner: &Id, spender: &Id) -> Vec<u8> {
    let mut k = b"alw:".to_vec();
    k.extend_from_slice(owner);
    k.extend_from_slice(spender);
    k
}

fn read_u64(key: &[u8]) -> u64 {
    get(key).map_or(0, |v| u64_at(&v, 0))
}

fn write_u64(key: &[u8], value: u64) {
    if value == 0 {
        remove(key);
    } else {
        set(key, &value.to_le_bytes());
    }
}

fn move_tokens(from: &Id, to: &Id, amount: u64) {
    let from_key = balance_key(from);
    let balance = read_u64(&from_key);
    if balance < amount {
        fail("insufficient balance");
    }
    write_u64(&from_key, balance - amount);
    let to_key = balance_key(to);
    let credited = read_u64(&to_key)
        .checked_add(amount)
        .unwrap_or_else(|| fail("balance overflow"));
    write_u64(&to_key, credited);
    let mut data = Vec::with_capacity(72);
    data.extend_from_slice(from);
    data.extend_from_slice(to);
    data.extend_from_slice(&amount.to_le_bytes());
    event(if cfg!(feature = "v2") { b"Transfer.v2" } else { b"Transfer" }, &data);
}

#[unsafe(no_mangle)]
pub extern "C" fn init() {
    let input = input();
    if get(b"supply").is_some() {
        fail("already initialised");
    }
    let supply = u64_at(&input, 0);
    write_u64(b"supply", supply);
    write_u64(&balance_key(&sender()), supply);
}

#[unsafe(no_mangle)]
pub extern "C" fn transfer() {
    let input = input();
    move_tokens(&sender(), &id_at(&input, 0), u64_at(&input, 32));
}

#[unsafe(no_mangle)]
pub extern "C" fn transfer_between() {
    let input = input();
    let from = id_at(&input, 0);
    if from != sender() {
        fail("only the owner moves its tokens");
    }
    move_tokens(&from, &id_at(&input, 32), u64_at(&input, 64));
}

#[unsafe(no_mangle)]
pub extern "C" fn approve() {
    let input = input();
    write_u64(&allowance_key(&sender(), &id_at(&input, 0)), u64_at(&input, 32));
}

#[unsafe(no_mangle)]
pub extern "C" fn transfer_from() {
    let input = input();
    let owner = id_at(&input, 0);
    let amount = u64_at(&input, 64);
    let key = allowance_key(&owner, &sender());
    let allowed = read_u64(&key);
    if allowed < amount {
        fail("allowance exceeded");
    }
    write_u64(&key, allowed - amount);
    move_tokens(&owner, &id_at(&input, 32), amount);
}

#[unsafe(no_mangle)]
pub extern "C" fn balance_of() {
    let input = input();
    ret(&read_u64(&balance_key(&id_at(&input, 0))).to_le_bytes());
}

#[unsafe(no_mangle)]
pub extern "C" fn total_supply() {
    ret(&read_u64(b"supply").to_le_bytes());
}

#[cfg(feature = "v2")]
#[unsafe(no_mangle)]
pub extern "C" fn burn() {
    let input = input();
    let amount = u64_at(&input, 0);
    let key = balance_key(&sender());
    let balance = read_u64(&key);
    if balance < amount {
        fail("insufficient balance");
    }
    write_u64(&key, balance - amount);
    write_u64(b"supply", read_u64(b"supply") - amount);
    event(b"Burn", &amount.to_le_bytes());
}
