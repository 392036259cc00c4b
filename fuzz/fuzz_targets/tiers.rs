#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    synor_host_wasmtime::fuzzing::tiers(data);
});
