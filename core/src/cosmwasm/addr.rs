//! Addresses: what `addr_validate`, `addr_canonicalize` and `addr_humanize` do.

use alloc::string::String;
use alloc::vec::Vec;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};

/// The chain's address format. Errors are messages the contract receives (in a region, as
/// cosmwasm-vm returns a backend's user errors), not traps.
pub trait Api {
    /// The canonical (binary) form of `human`.
    ///
    /// # Errors
    /// Why `human` is not an address of this chain.
    fn canonicalize(&self, human: &str) -> Result<Vec<u8>, String>;

    /// The human-readable form of `canonical`.
    ///
    /// # Errors
    /// Why `canonical` cannot be an address of this chain.
    fn humanize(&self, canonical: &[u8]) -> Result<String, String>;

    /// Whether `human` is an address of this chain in its normal form: it canonicalizes, and
    /// humanizes back to itself.
    ///
    /// # Errors
    /// Why it is not.
    fn validate(&self, human: &str) -> Result<(), String> {
        let canonical = self.canonicalize(human)?;
        if self.humanize(&canonical)? != human {
            return Err("Invalid input: address not normalized".into());
        }
        Ok(())
    }
}

/// Bech32 addresses with one human-readable prefix, exactly as cosmwasm-vm's `MockApi`
/// (which follows wasmd): the canonical address is the bech32 data, 1 to 255 bytes; the
/// prefix is compared case-insensitively; errors are `MockApi`'s messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bech32Api {
    prefix: String,
}

impl Bech32Api {
    /// Addresses with `prefix` (e.g. `"cosmwasm"`, `"juno"`).
    ///
    /// # Errors
    /// The prefix is not a valid bech32 human-readable part.
    pub fn new(prefix: &str) -> Result<Self, String> {
        Hrp::parse(prefix).map_err(|e| alloc::format!("invalid bech32 prefix {prefix:?}: {e}"))?;
        Ok(Self {
            prefix: prefix.into(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Default for Bech32Api {
    /// Prefix `cosmwasm`, `MockApi`'s.
    fn default() -> Self {
        Self {
            prefix: "cosmwasm".into(),
        }
    }
}

/// `MockApi`'s bound on canonical addresses.
fn check_length(bytes: &[u8]) -> Result<(), String> {
    match bytes.len() {
        1..=255 => Ok(()),
        _ => Err("Invalid canonical address length".into()),
    }
}

impl Api for Bech32Api {
    fn canonicalize(&self, human: &str) -> Result<Vec<u8>, String> {
        let decoded = CheckedHrpstring::new::<Bech32>(human)
            .map_err(|_| String::from("Error decoding bech32"))?;
        if !decoded
            .hrp()
            .as_bytes()
            .eq_ignore_ascii_case(self.prefix.as_bytes())
        {
            return Err("Wrong bech32 prefix".into());
        }
        let bytes: Vec<u8> = decoded.byte_iter().collect();
        check_length(&bytes)?;
        Ok(bytes)
    }

    fn humanize(&self, canonical: &[u8]) -> Result<String, String> {
        check_length(canonical)?;
        let hrp = Hrp::parse(&self.prefix).map_err(|_| String::from("Invalid bech32 prefix"))?;
        bech32::encode::<Bech32>(hrp, canonical)
            .map_err(|_| String::from("Invalid data to be encoded to bech32"))
    }
}
