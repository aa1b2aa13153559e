#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| multiproc::__fuzz::spawn_payload(data));
