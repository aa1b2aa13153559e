//! Semantic checks: everything that makes a function unfit to be a worker.
//!
//! Every problem is reported under the tokens that cause it, all at once
//! (errors are combined), with a sentence that says why and what to do.

use crate::ast::{Param, Worker};
use proc_macro2::TokenStream;
use syn::visit::Visit;
use syn::{Error, FnArg, GenericParam, ItemFn, ReturnType, Type};

/// Collects errors so the user sees all of them in one build.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, tokens: impl quote::ToTokens, message: &str) {
        let error = Error::new_spanned(tokens, message);
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }
}

/// Checks the attribute arguments and the function; returns the typed view or
/// every error found.
pub(crate) fn check<'a>(args: &TokenStream, item: &'a ItemFn) -> Result<Worker<'a>, Error> {
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.push(
            args,
            "#[worker] takes no arguments: write `#[worker]` alone (the worker's name comes from its module path)",
        );
    }

    let sig = &item.sig;
    if let Some(token) = &sig.constness {
        errors.push(
            token,
            "a worker cannot be a `const fn`: it runs as the body of a child process; remove `const`",
        );
    }
    if let Some(token) = &sig.asyncness {
        errors.push(
            token,
            "a worker cannot be `async`: it runs as the body of a child process; make it a plain `fn` and block on your runtime inside it",
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.push(
            token,
            "a worker cannot be `unsafe fn`: a child process calls it with whatever arguments the parent sent; make it safe and put the `unsafe` block inside",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(
            abi,
            "a worker cannot be `extern`: multiproc calls it as a Rust function; remove the ABI",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(variadic, "a worker cannot be variadic");
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(lt) => errors.push(
                lt,
                "a worker cannot have lifetime parameters: its arguments are sent to another process, so they must be owned (no borrows)",
            ),
            GenericParam::Type(_) => errors.push(
                param,
                "a worker cannot be generic: the child process finds it by name, so it needs one concrete signature; use concrete types (an enum covers several)",
            ),
            GenericParam::Const(_) => errors.push(
                param,
                "a worker cannot have const generic parameters: the child process finds it by name, so it needs one concrete signature; pass the value as an ordinary argument",
            ),
        }
    }
    if let Some(clause) = &sig.generics.where_clause {
        errors.push(
            clause,
            "a worker cannot have a `where` clause: it needs one concrete signature",
        );
    }

    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(
                receiver,
                "#[worker] goes on a free function, not a method: a child process has no `self` to call it on; move it out of the `impl` and pass the value as an argument",
            ),
            FnArg::Typed(typed) => {
                check_owned(&mut errors, &typed.ty, "parameter");
                params.push(Param {
                    attrs: &typed.attrs,
                    pat: &typed.pat,
                    ty: &typed.ty,
                });
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Type::Never(never) = &**ty {
            errors.push(
                never,
                "a worker cannot return `!`: its result type must be a serde type; declare it `-> ()` instead (the body may still loop forever or exit)",
            );
        }
        check_owned(&mut errors, ty, "return type");
    }

    match errors.0 {
        Some(error) => Err(error),
        None => Ok(Worker {
            attrs: &item.attrs,
            vis: &item.vis,
            ident: &sig.ident,
            params,
            paren: &sig.paren_token,
            output: &sig.output,
            body: &item.block,
        }),
    }
}

/// Rejects borrows and `impl Trait` anywhere inside a parameter or return type.
fn check_owned(errors: &mut Errors, ty: &Type, what: &str) {
    struct Finder<'e, 'w> {
        errors: &'e mut Errors,
        what: &'w str,
    }
    impl<'ast> Visit<'ast> for Finder<'_, '_> {
        fn visit_type_reference(&mut self, node: &'ast syn::TypeReference) {
            let message = format!(
                "a worker {} must be owned, not a reference: values are serialized and sent between processes; take `String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`",
                self.what
            );
            self.errors.push(node, &message);
        }
        fn visit_type_impl_trait(&mut self, node: &'ast syn::TypeImplTrait) {
            let message = format!(
                "a worker {} cannot be `impl Trait`: the other process must know the concrete type to deserialize it; name the type",
                self.what
            );
            self.errors.push(node, &message);
        }
        fn visit_lifetime(&mut self, node: &'ast syn::Lifetime) {
            if node.ident != "static" {
                let message = format!(
                    "a worker {} cannot borrow (lifetime `{}`): values are sent between processes, so they must be owned",
                    self.what, node
                );
                self.errors.push(node, &message);
            }
        }
    }
    Finder { errors, what }.visit_type(ty);
}
