//! Builds the floors' bare C programs next to the bench and tells the bench
//! where they are: `floor/fork_floor.c` (`FORK_FLOOR`), the fork floors,
//! and `floor/latency_floor.c` (`LATENCY_FLOOR`), the spinning ping-pong.
//! Floors in C because they fork or share memory, and the project keeps
//! `unsafe` (which either needs from Rust) in the runtime's `sys` module.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let compiler = cc::Build::new().opt_level(2).warnings(true).get_compiler();
    for (name, env) in [
        ("fork_floor", "FORK_FLOOR"),
        ("latency_floor", "LATENCY_FLOOR"),
    ] {
        let source = format!("floor/{name}.c");
        println!("cargo:rerun-if-changed={source}");
        let exe = out.join(name);
        let status = compiler
            .to_command()
            .args([source.as_ref(), "-o".as_ref(), exe.as_os_str()])
            .status()
            .expect("the C compiler runs");
        assert!(status.success(), "compiling {source} failed ({status})");
        println!("cargo:rustc-env={env}={}", exe.display());
    }
}
