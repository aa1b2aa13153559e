//! A typed view of a validated worker function.

use syn::{Attribute, Block, Ident, Pat, ReturnType, Type, Visibility};

/// One parameter of the worker: its attributes, pattern and (owned) type.
pub(crate) struct Param<'a> {
    pub attrs: &'a [Attribute],
    pub pat: &'a Pat,
    pub ty: &'a Type,
}

/// The parts of `#[worker] fn name(params) -> output { body }` the expansion needs.
pub(crate) struct Worker<'a> {
    pub attrs: &'a [Attribute],
    pub vis: &'a Visibility,
    pub ident: &'a Ident,
    pub params: Vec<Param<'a>>,
    /// The parentheses around the parameter list, to point at all of them.
    pub paren: &'a syn::token::Paren,
    pub output: &'a ReturnType,
    pub body: &'a Block,
}
