#![no_main]

use libfuzzer_sys::fuzz_target;

// The first byte is the table's size (capped at `MAX_FDS` by the entry point).
fuzz_target!(|data: &[u8]| {
    if let Some((&nfds, rest)) = data.split_first() {
        multiproc::__fuzz::handle_table(rest, nfds);
    }
});
