//! Signature verification with cosmwasm-crypto's semantics and cosmwasm-vm's return codes:
//! 0 valid, 1 invalid, and an error code above 1 for malformed input
//! ([`INVALID_HASH_FORMAT`] and the rest, `CryptoError::code` in cosmwasm-crypto).

use alloc::vec::Vec;

use ed25519_zebra::{Signature as EdSignature, VerificationKey};

/// The signature is valid.
pub const VALID: u32 = 0;
/// The signature is not valid.
pub const INVALID: u32 = 1;
/// The message hash is not 32 bytes.
pub const INVALID_HASH_FORMAT: u32 = 3;
/// The signature is not 64 bytes.
pub const INVALID_SIGNATURE_FORMAT: u32 = 4;
/// The public key has the wrong length or first byte.
pub const INVALID_PUBKEY_FORMAT: u32 = 5;
/// The recovery parameter is out of range.
pub const INVALID_RECOVERY_PARAM: u32 = 6;
/// The numbers of messages, signatures and keys of a batch do not match.
pub const BATCH_ERROR: u32 = 7;
/// Anything else (a signature or key that does not decode).
pub const GENERIC_ERROR: u32 = 10;

/// The longest message hash (cosmwasm-crypto's `MESSAGE_HASH_MAX_LEN`).
pub const MESSAGE_HASH_MAX_LEN: u32 = 32;
/// The length of an ECDSA signature (`ECDSA_SIGNATURE_LEN`).
pub const ECDSA_SIGNATURE_LEN: u32 = 64;
/// The longest ECDSA public key, uncompressed (`ECDSA_PUBKEY_MAX_LEN`).
pub const ECDSA_PUBKEY_MAX_LEN: u32 = 65;
/// The length of an ed25519 signature.
pub const EDDSA_SIGNATURE_LEN: u32 = 64;
/// The length of an ed25519 public key (`EDDSA_PUBKEY_LEN`).
pub const EDDSA_PUBKEY_LEN: u32 = 32;
/// The longest ed25519 message (cosmwasm-vm's `MAX_LENGTH_ED25519_MESSAGE`).
pub const MAX_ED25519_MESSAGE_LEN: u32 = 128 << 10;
/// The most messages, signatures or keys in a batch (`MAX_COUNT_ED25519_BATCH`).
pub const MAX_ED25519_BATCH: u32 = 256;

/// A 33-byte key starting 2 or 3, or a 65-byte key starting 4.
fn pubkey_format_ok(key: &[u8]) -> bool {
    match key.first() {
        Some(0x02 | 0x03) => key.len() == 33,
        Some(0x04) => key.len() == 65,
        _ => false,
    }
}

/// Checks the lengths every ECDSA call shares.
fn hash_and_signature(hash: &[u8], signature: &[u8]) -> Result<([u8; 32], [u8; 64]), u32> {
    let hash: [u8; 32] = hash.try_into().map_err(|_| INVALID_HASH_FORMAT)?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| INVALID_SIGNATURE_FORMAT)?;
    Ok((hash, signature))
}

/// Defines the verification and the recovery for one curve: the two differ only in the
/// recovery (secp256k1 takes parameters 0 and 1 and normalizes high S, as Ethereum does;
/// secp256r1 takes 0 to 3 as they are).
macro_rules! ecdsa {
    ($verify:ident, $recover:ident, $curve:ident, $normalize_recovery:literal) => {
        /// Verifies `signature` (64 bytes, r ‖ s, high or low S) of the 32-byte message
        /// `hash` by `public_key` (SEC1, 33 or 65 bytes), as cosmwasm-crypto does: a code.
        pub fn $verify(hash: &[u8], signature: &[u8], public_key: &[u8]) -> u32 {
            use $curve::ecdsa::signature::hazmat::PrehashVerifier;
            use $curve::ecdsa::{Signature, VerifyingKey};
            let (hash, signature) = match hash_and_signature(hash, signature) {
                Ok(v) => v,
                Err(code) => return code,
            };
            if !pubkey_format_ok(public_key) {
                return INVALID_PUBKEY_FORMAT;
            }
            let Ok(mut signature) = Signature::from_bytes(&signature.into()) else {
                return GENERIC_ERROR;
            };
            if let Some(normalized) = signature.normalize_s() {
                signature = normalized;
            }
            let Ok(key) = VerifyingKey::from_sec1_bytes(public_key) else {
                return GENERIC_ERROR;
            };
            match key.verify_prehash(&hash, &signature) {
                Ok(()) => VALID,
                Err(_) => INVALID,
            }
        }

        /// The public key (65 bytes, uncompressed) that made `signature` of `hash` with
        /// recovery parameter `param`, as cosmwasm-crypto recovers it; else an error code.
        ///
        /// # Errors
        /// The code cosmwasm-vm returns in the high half of the result.
        pub fn $recover(hash: &[u8], signature: &[u8], param: u32) -> Result<Vec<u8>, u32> {
            // The `ecdsa` crate's type, which k256 re-exports and p256 does not.
            use k256::ecdsa::RecoveryId;
            use $curve::ecdsa::{Signature, VerifyingKey};
            let (hash, signature) = hash_and_signature(hash, signature)?;
            let param = u8::try_from(param).map_err(|_| INVALID_RECOVERY_PARAM)?;
            let highest = if $normalize_recovery { 1 } else { 3 };
            if param > highest {
                return Err(INVALID_RECOVERY_PARAM);
            }
            let mut id = RecoveryId::from_byte(param).ok_or(INVALID_RECOVERY_PARAM)?;
            let mut signature =
                Signature::from_bytes(&signature.into()).map_err(|_| GENERIC_ERROR)?;
            if $normalize_recovery {
                if let Some(normalized) = signature.normalize_s() {
                    signature = normalized;
                    id = RecoveryId::new(!id.is_y_odd(), id.is_x_reduced());
                }
            }
            let key = VerifyingKey::recover_from_prehash(&hash, &signature, id)
                .map_err(|_| GENERIC_ERROR)?;
            Ok(key.to_encoded_point(false).as_bytes().to_vec())
        }
    };
}

ecdsa!(secp256k1_verify, secp256k1_recover_pubkey, k256, true);
ecdsa!(secp256r1_verify, secp256r1_recover_pubkey, p256, false);

/// Verifies the ed25519 `signature` (64 bytes) of `message` by `public_key` (32 bytes) under
/// ZIP-215 rules (ed25519-zebra, as cosmwasm-crypto): a code.
pub fn ed25519_verify(message: &[u8], signature: &[u8], public_key: &[u8]) -> u32 {
    let Ok(signature) = <[u8; 64]>::try_from(signature) else {
        return INVALID_SIGNATURE_FORMAT;
    };
    let Ok(key) = <[u8; 32]>::try_from(public_key) else {
        return INVALID_PUBKEY_FORMAT;
    };
    match VerificationKey::try_from(key)
        .and_then(|k| k.verify(&EdSignature::from(signature), message))
    {
        Ok(()) => VALID,
        Err(_) => INVALID,
    }
}

/// Verifies a batch as cosmwasm-crypto's `ed25519_batch_verify` decides it: `n` messages,
/// signatures and keys; or one message signed `n` times; or one key signing `n` messages.
/// Valid when every signature is (an empty batch is valid). Each is verified alone: the same
/// verdict as zebra's randomized batch, deterministically.
pub fn ed25519_batch_verify(
    messages: &[&[u8]],
    signatures: &[&[u8]],
    public_keys: &[&[u8]],
) -> u32 {
    let (m, s, k) = (messages.len(), signatures.len(), public_keys.len());
    // The i-th triple: a list of one item serves every signature.
    fn at<'a>(list: &[&'a [u8]], i: usize) -> &'a [u8] {
        list[if list.len() == 1 { 0 } else { i }]
    }
    let shape_ok = (m == s || m == 1) && (k == s || k == 1) && (m == s || k == s);
    if !shape_ok {
        return BATCH_ERROR;
    }
    // Formats first, as cosmwasm-crypto reads them all before verifying any.
    for (i, signature) in signatures.iter().enumerate() {
        if signature.len() != EDDSA_SIGNATURE_LEN as usize {
            return INVALID_SIGNATURE_FORMAT;
        }
        if at(public_keys, i).len() != EDDSA_PUBKEY_LEN as usize {
            return INVALID_PUBKEY_FORMAT;
        }
    }
    for (i, signature) in signatures.iter().enumerate() {
        if ed25519_verify(at(messages, i), signature, at(public_keys, i)) != VALID {
            return INVALID;
        }
    }
    VALID
}
