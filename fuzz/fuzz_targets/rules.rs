#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nctls_fuzz::rules::run(data));
