//! Builds `floor/fork_floor.c`, the fork floors' bare C program, next to
//! the bench and tells the bench where it is (`FORK_FLOOR`). A floor in C
//! because it forks, and the project keeps `unsafe` (which a fork from Rust
//! needs) in the runtime's `sys` module.

use std::path::PathBuf;

fn main() {
    let source = "floor/fork_floor.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let exe = out.join("fork_floor");
    let compiler = cc::Build::new().opt_level(2).warnings(true).get_compiler();
    let status = compiler
        .to_command()
        .args([source.as_ref(), "-o".as_ref(), exe.as_os_str()])
        .status()
        .expect("the C compiler runs");
    assert!(status.success(), "compiling {source} failed ({status})");
    println!("cargo:rustc-env=FORK_FLOOR={}", exe.display());
}
