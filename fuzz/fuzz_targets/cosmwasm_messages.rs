#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| synor_core::fuzzing::cosmwasm_messages(data));
