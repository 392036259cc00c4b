//! Tests of the CosmWasm layer.
