//! The JSON a host and a CosmWasm contract exchange, as cosmwasm-std 2.x writes and reads it
//! (field names, casing, numbers as strings, base64 bytes). Only what a host needs: the
//! arguments of the entry points, their results, the messages a response may carry and the
//! queries a contract may make.
//!
//! Messages and queries outside the supported subset do not make a response unreadable:
//! they parse into an `Unsupported` variant that keeps their name (e.g. `staking`,
//! `bank.burn`), so that the host fails that message with a clear error.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::MAX_RESULT_JSON_BYTES;

/// Bytes, as base64 (standard alphabet, padded) in JSON: cosmwasm-std's `Binary`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct Binary(pub Vec<u8>);

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Binary;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Binary, E> {
                STANDARD
                    .decode(v)
                    .map(Binary)
                    .map_err(|e| E::custom(format!("invalid base64: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

impl From<&[u8]> for Binary {
    fn from(b: &[u8]) -> Self {
        Binary(b.to_vec())
    }
}

/// Defines an unsigned integer that JSON carries as a decimal string (cosmwasm-std's
/// `Uint64`, `Uint128`, `Timestamp`).
macro_rules! string_number {
    ($(#[$doc:meta])* $name:ident($int:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
        pub struct $name(pub $int);

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("an unsigned integer as a string")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse::<$int>()
                            .map($name)
                            .map_err(|e| E::custom(format!("invalid {}: {e}", stringify!($name))))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

string_number!(
    /// A 128-bit amount (cosmwasm-std's `Uint128`), a decimal string in JSON.
    Uint128(u128)
);
string_number!(
    /// A 64-bit number as a decimal string (cosmwasm-std's `Uint64`).
    Uint64(u64)
);
string_number!(
    /// Nanoseconds since the Unix epoch (cosmwasm-std's `Timestamp`), a decimal string.
    Timestamp(u64)
);

/// An amount of a native token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coin {
    /// Its denomination.
    pub denom: String,
    /// Its amount.
    pub amount: Uint128,
}

/// The block a call runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Its height.
    pub height: u64,
    /// Its time.
    pub time: Timestamp,
    /// The chain's id.
    pub chain_id: String,
}

/// The transaction a call belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionInfo {
    /// Its index in the block.
    pub index: u32,
    /// Its hash (cosmwasm-std 3.x; left out of the JSON when `None`, which 2.x contracts
    /// never read anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Binary>,
}

/// The contract called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractInfo {
    /// Its address.
    pub address: String,
}

/// The environment of a call: the first argument of every entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Env {
    /// The block.
    pub block: BlockInfo,
    /// The transaction (`null` outside one, e.g. in a query).
    pub transaction: Option<TransactionInfo>,
    /// The contract.
    pub contract: ContractInfo,
}

/// Who called and what they sent: the second argument of `instantiate` and `execute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageInfo {
    /// The sender's address.
    pub sender: String,
    /// The native tokens sent with the call.
    pub funds: Vec<Coin>,
}

/// A key-value pair of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// An event a response emits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
}

/// `{"ok": T}` or `{"error": "..."}`: what an entry point returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractResult<T> {
    /// Success.
    Ok(T),
    /// The contract's error message.
    #[serde(rename = "error")]
    Err(String),
}

/// A failure of the chain (not of a contract) to answer a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemError {
    /// The request could not be parsed.
    InvalidRequest {
        /// Why.
        error: String,
        /// The request.
        request: Binary,
    },
    /// The response could not be parsed.
    InvalidResponse {
        /// Why.
        error: String,
        /// The response.
        response: Binary,
    },
    /// The contract queried does not exist.
    NoSuchContract {
        /// Its address.
        addr: String,
    },
    /// The code queried does not exist.
    NoSuchCode {
        /// Its id.
        code_id: u64,
    },
    /// Something else went wrong.
    Unknown {},
    /// The chain does not serve this kind of query.
    UnsupportedRequest {
        /// The kind of query.
        kind: String,
    },
}

/// `{"ok": T}` or `{"error": SystemError}`: the outer result of `query_chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemResult<T> {
    /// The chain answered.
    Ok(T),
    /// The chain could not answer.
    #[serde(rename = "error")]
    Err(SystemError),
}

/// What `query_chain` returns to the contract (as JSON).
pub type QuerierResult = SystemResult<ContractResult<Binary>>;

/// When a submessage's result is passed to the caller's `reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyOn {
    /// Always.
    Always,
    /// Only if it failed.
    Error,
    /// Only if it succeeded.
    Success,
    /// Never: a failure fails the caller.
    Never,
}

/// A message a response asks the chain to run, with how to report its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubMsg {
    /// The id passed to `reply`.
    pub id: u64,
    /// Data passed back to `reply` untouched (cosmwasm-std 2.0+).
    #[serde(default)]
    pub payload: Binary,
    /// The message.
    pub msg: CosmosMsg,
    /// The most gas it may use, if limited.
    pub gas_limit: Option<u64>,
    /// When to call `reply`.
    pub reply_on: ReplyOn,
}

/// What `instantiate`, `execute`, `migrate`, `sudo` and `reply` return on success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Messages to run after this call, in order.
    pub messages: Vec<SubMsg>,
    /// Attributes of the call's `wasm` event.
    pub attributes: Vec<Attribute>,
    /// Further events.
    pub events: Vec<Event>,
    /// Data returned to the caller.
    pub data: Option<Binary>,
}

/// A message a contract sends: the supported subset of cosmwasm-std's `CosmosMsg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CosmosMsg {
    /// A bank message.
    Bank(BankMsg),
    /// A wasm message.
    Wasm(WasmMsg),
    /// Another kind (`staking`, `distribution`, `stargate`, `any`, `ibc`, `gov`, `custom`,
    /// ...), by name; its content is skipped. Cannot be serialized.
    #[serde(skip_serializing)]
    Unsupported(String),
}

/// A bank message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BankMsg {
    /// Sends native tokens from the contract.
    Send {
        /// The receiver.
        to_address: String,
        /// What to send.
        amount: Vec<Coin>,
    },
    /// Another bank message (`burn`), by name. Cannot be serialized.
    #[serde(skip_serializing)]
    Unsupported(String),
}

/// A message to a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WasmMsg {
    /// Runs `execute` of a contract.
    Execute {
        /// The contract.
        contract_addr: String,
        /// Its `execute` message (JSON).
        msg: Binary,
        /// Native tokens sent along.
        funds: Vec<Coin>,
    },
    /// Instantiates a contract from stored code.
    Instantiate {
        /// Who may migrate it.
        admin: Option<String>,
        /// The stored code.
        code_id: u64,
        /// Its `instantiate` message (JSON).
        msg: Binary,
        /// Native tokens sent along.
        funds: Vec<Coin>,
        /// A human-readable label.
        label: String,
    },
    /// Instantiates a contract at an address derived from `salt`.
    Instantiate2 {
        /// Who may migrate it.
        admin: Option<String>,
        /// The stored code.
        code_id: u64,
        /// A human-readable label.
        label: String,
        /// Its `instantiate` message (JSON).
        msg: Binary,
        /// Native tokens sent along.
        funds: Vec<Coin>,
        /// What the address is derived from (with the code's checksum and the creator).
        salt: Binary,
    },
    /// Migrates a contract to new code.
    Migrate {
        /// The contract.
        contract_addr: String,
        /// The code to migrate to.
        new_code_id: u64,
        /// Its `migrate` message (JSON).
        msg: Binary,
    },
    /// Sets a contract's admin.
    UpdateAdmin {
        /// The contract.
        contract_addr: String,
        /// The new admin.
        admin: String,
    },
    /// Removes a contract's admin.
    ClearAdmin {
        /// The contract.
        contract_addr: String,
    },
    /// Another wasm message, by name. Cannot be serialized.
    #[serde(skip_serializing)]
    Unsupported(String),
}

impl CosmosMsg {
    /// The message's kind if it is outside the supported subset (`"staking"`,
    /// `"bank.burn"`, ...), else `None`.
    pub fn unsupported(&self) -> Option<String> {
        match self {
            CosmosMsg::Unsupported(kind) => Some(kind.clone()),
            CosmosMsg::Bank(BankMsg::Unsupported(kind)) => Some(format!("bank.{kind}")),
            CosmosMsg::Wasm(WasmMsg::Unsupported(kind)) => Some(format!("wasm.{kind}")),
            _ => None,
        }
    }
}

/// A query a contract makes through `query_chain`: the supported subset of cosmwasm-std's
/// `QueryRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryRequest {
    /// A bank query.
    Bank(BankQuery),
    /// A wasm query.
    Wasm(WasmQuery),
    /// Another kind, by name. Cannot be serialized.
    #[serde(skip_serializing)]
    Unsupported(String),
}

/// A bank query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BankQuery {
    /// The balance of `address` in `denom`; answered with `{"amount": Coin}`.
    Balance {
        /// The account.
        address: String,
        /// The denomination.
        denom: String,
    },
    /// Another bank query, by name. Cannot be serialized.
    #[serde(skip_serializing)]
    Unsupported(String),
}

/// A wasm query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WasmQuery {
    /// Runs `query` of a contract with `msg`; answered with its result.
    Smart {
        /// The contract.
        contract_addr: String,
        /// Its `query` message (JSON).
        msg: Binary,
    },
    /// Reads a key of a contract's storage; answered with the value (empty if absent).
    Raw {
        /// The contract.
        contract_addr: String,
        /// The key, as the contract names it.
        key: Binary,
    },
    /// Another wasm query, by name. Cannot be serialized.
    #[serde(skip_serializing)]
    Unsupported(String),
}

impl QueryRequest {
    /// The query's kind if it is outside the supported subset (`"staking"`,
    /// `"wasm.contract_info"`, ...), else `None`.
    pub fn unsupported(&self) -> Option<String> {
        match self {
            QueryRequest::Unsupported(kind) => Some(kind.clone()),
            QueryRequest::Bank(BankQuery::Unsupported(kind)) => Some(format!("bank.{kind}")),
            QueryRequest::Wasm(WasmQuery::Unsupported(kind)) => Some(format!("wasm.{kind}")),
            _ => None,
        }
    }
}

/// An externally tagged enum (`{"tag": content}`) that keeps an unknown tag instead of
/// failing: one of the enums above.
trait Tagged: Sized {
    /// What the JSON should be, for error messages.
    const EXPECTING: &'static str;
    /// The value for `tag`, reading its content from `map` (skipping it for an unknown tag).
    fn content<'de, A: MapAccess<'de>>(tag: &str, map: &mut A) -> Result<Self, A::Error>;
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some(tag) = map.next_key::<String>()? else {
            return Err(de::Error::custom(format!(
                "{}: found an empty object",
                T::EXPECTING
            )));
        };
        let value = T::content(&tag, &mut map)?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format!(
                "{}: found more than one key",
                T::EXPECTING
            )));
        }
        Ok(value)
    }
}

/// Deserializes a [`Tagged`] enum.
macro_rules! tagged {
    ($ty:ident, $expecting:literal, { $($tag:literal => $build:expr),* $(,)? }) => {
        impl Tagged for $ty {
            const EXPECTING: &'static str = $expecting;
            fn content<'de, A: MapAccess<'de>>(tag: &str, map: &mut A) -> Result<Self, A::Error> {
                Ok(match tag {
                    $($tag => $build(&mut *map)?,)*
                    other => {
                        map.next_value::<IgnoredAny>()?;
                        $ty::Unsupported(other.to_string())
                    }
                })
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map(TaggedVisitor::<$ty>(PhantomData))
            }
        }
    };
}

/// The content of a struct variant, read with serde's derive.
macro_rules! variant {
    ($ty:ident :: $variant:ident { $($field:ident : $fty:ty),* $(,)? }) => {
        |map: &mut A| -> Result<$ty, A::Error> {
            #[derive(Deserialize)]
            struct Fields { $($field: $fty),* }
            let Fields { $($field),* } = map.next_value::<Fields>()?;
            Ok($ty::$variant { $($field),* })
        }
    };
}

tagged!(CosmosMsg, "a CosmosMsg object", {
    "bank" => |map: &mut A| map.next_value().map(CosmosMsg::Bank),
    "wasm" => |map: &mut A| map.next_value().map(CosmosMsg::Wasm),
});

tagged!(BankMsg, "a BankMsg object", {
    "send" => variant!(BankMsg::Send { to_address: String, amount: Vec<Coin> }),
});

tagged!(WasmMsg, "a WasmMsg object", {
    "execute" => variant!(WasmMsg::Execute { contract_addr: String, msg: Binary, funds: Vec<Coin> }),
    "instantiate" => variant!(WasmMsg::Instantiate {
        admin: Option<String>, code_id: u64, msg: Binary, funds: Vec<Coin>, label: String
    }),
    "instantiate2" => variant!(WasmMsg::Instantiate2 {
        admin: Option<String>, code_id: u64, label: String, msg: Binary, funds: Vec<Coin>,
        salt: Binary
    }),
    "migrate" => variant!(WasmMsg::Migrate { contract_addr: String, new_code_id: u64, msg: Binary }),
    "update_admin" => variant!(WasmMsg::UpdateAdmin { contract_addr: String, admin: String }),
    "clear_admin" => variant!(WasmMsg::ClearAdmin { contract_addr: String }),
});

tagged!(QueryRequest, "a QueryRequest object", {
    "bank" => |map: &mut A| map.next_value().map(QueryRequest::Bank),
    "wasm" => |map: &mut A| map.next_value().map(QueryRequest::Wasm),
});

tagged!(BankQuery, "a BankQuery object", {
    "balance" => variant!(BankQuery::Balance { address: String, denom: String }),
});

tagged!(WasmQuery, "a WasmQuery object", {
    "smart" => variant!(WasmQuery::Smart { contract_addr: String, msg: Binary }),
    "raw" => variant!(WasmQuery::Raw { contract_addr: String, key: Binary }),
});

/// The argument of the `reply` entry point: a submessage's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The submessage's id.
    pub id: u64,
    /// The submessage's payload.
    #[serde(default)]
    pub payload: Binary,
    /// Gas the submessage used.
    #[serde(default)]
    pub gas_used: u64,
    /// Its result.
    pub result: SubMsgResult,
}

/// A submessage's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubMsgResult {
    /// It succeeded.
    Ok(SubMsgResponse),
    /// It failed, with this error.
    #[serde(rename = "error")]
    Err(String),
}

/// What a successful submessage produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubMsgResponse {
    /// Its events.
    pub events: Vec<Event>,
    /// Its data (deprecated in 2.x in favour of `msg_responses`, still sent).
    pub data: Option<Binary>,
    /// The responses of the messages it ran (cosmwasm-std 2.0+).
    #[serde(default)]
    pub msg_responses: Vec<MsgResponse>,
}

/// One message's response, as the chain encodes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgResponse {
    /// The protobuf type URL.
    pub type_url: String,
    /// The encoded response.
    pub value: Binary,
}

/// Why an entry point's result could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// It is longer than [`MAX_RESULT_JSON_BYTES`].
    TooLong(usize),
    /// It is not the JSON expected (serde_json's message).
    Json(String),
    /// A query's result is not JSON itself.
    NotJson(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLong(n) => write!(
                f,
                "result of {n} bytes exceeds the deserialization limit of {MAX_RESULT_JSON_BYTES}"
            ),
            ParseError::Json(m) => write!(f, "cannot parse result: {m}"),
            ParseError::NotJson(m) => write!(f, "query response must be valid JSON: {m}"),
        }
    }
}

impl core::error::Error for ParseError {}

/// `T` from `json`, at most [`MAX_RESULT_JSON_BYTES`] long (checked before parsing).
///
/// # Errors
/// [`ParseError::TooLong`], or [`ParseError::Json`].
pub fn parse_bounded<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, ParseError> {
    if json.len() > MAX_RESULT_JSON_BYTES {
        return Err(ParseError::TooLong(json.len()));
    }
    serde_json::from_slice(json).map_err(|e| ParseError::Json(e.to_string()))
}

/// The result of `instantiate`, `execute`, `migrate`, `sudo` or `reply`.
///
/// # Errors
/// As [`parse_bounded`].
pub fn parse_response(json: &[u8]) -> Result<ContractResult<Response>, ParseError> {
    parse_bounded(json)
}

/// The result of `query`; its data must be JSON, as cosmwasm-vm requires.
///
/// # Errors
/// As [`parse_bounded`]; [`ParseError::NotJson`] when the data is not JSON.
pub fn parse_query_result(json: &[u8]) -> Result<ContractResult<Binary>, ParseError> {
    let result: ContractResult<Binary> = parse_bounded(json)?;
    if let ContractResult::Ok(data) = &result {
        serde_json::from_slice::<IgnoredAny>(&data.0)
            .map_err(|e| ParseError::NotJson(e.to_string()))?;
    }
    Ok(result)
}

/// `value` as JSON.
///
/// # Errors
/// The value cannot be serialized (an `Unsupported` variant).
pub fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}
