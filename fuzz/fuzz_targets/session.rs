#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nctls_fuzz::session::run(data));
