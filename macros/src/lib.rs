//! The `#[worker]` attribute of [multiproc](https://docs.rs/multiproc).
//!
//! Users never name this crate: `multiproc` re-exports the attribute as
//! `multiproc::worker`, and the generated code reaches everything it needs
//! through `::multiproc::__private`.

mod ast;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Turns a free function into a worker that a child process can run.
///
/// See `multiproc::worker` for the documentation.
#[proc_macro_attribute]
pub fn worker(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::worker(args.into(), input.into()).into()
}
