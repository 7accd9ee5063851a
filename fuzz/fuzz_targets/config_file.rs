#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nctls_fuzz::config_file::run(data));
