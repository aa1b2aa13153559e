//! Code generation for `#[worker]`.
//!
//! `#[worker] fn square(x: i64) -> i64 { .. }` becomes an empty struct
//! `square` and a constant `square` of that type (so the name, used as a
//! value, implements `multiproc::Worker`) that dereferences to
//! `fn(i64) -> i64` (so `square(3)` still calls the function in this
//! process), plus a link-time registry entry that a re-executed child looks
//! up by name. Everything but the struct and the constant sits in one
//! anonymous `const` block. Every name the expansion binds starts with
//! `__multiproc`, so no worker or parameter name can collide with it.

use crate::ast::Worker;
use crate::valid;
use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{ToTokens, format_ident, quote};
use syn::spanned::Spanned;
use syn::{Item, ReturnType};

pub(crate) fn worker(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Fn(item)) => item,
        Ok(_) => {
            let error = syn::Error::new_spanned(
                &input,
                "#[worker] goes on a free function with a body, like `#[worker] fn square(x: i64) -> i64 { x * x }`",
            );
            return fallback(input, error);
        }
        Err(error) => return fallback(input, error),
    };
    match valid::check(&args, &item) {
        Ok(worker) => generate(&worker),
        Err(error) => fallback(item.into_token_stream(), error),
    }
}

/// The user's item as written, next to the error: one mistake must not
/// cascade into "cannot find function" errors at every call site.
fn fallback(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}

fn generate(worker: &Worker<'_>) -> TokenStream {
    let Worker {
        attrs,
        vis,
        ident,
        params,
        paren,
        output,
        body,
    } = worker;

    let mut doc_attrs = Vec::new();
    let mut cfg_attrs = Vec::new();
    let mut fn_attrs = Vec::new();
    for attr in attrs.iter() {
        if attr.path().is_ident("doc") {
            doc_attrs.push(attr);
        } else if attr.path().is_ident("cfg") {
            cfg_attrs.push(attr);
        } else {
            fn_attrs.push(attr);
        }
    }

    let tys: Vec<_> = params.iter().map(|p| p.ty).collect();
    let inputs = params.iter().map(|p| {
        let (attrs, pat, ty) = (p.attrs, p.pat, p.ty);
        quote!(#(#attrs)* #pat: #ty)
    });
    let vars: Vec<_> = (0..params.len())
        .map(|i| format_ident!("__multiproc_arg{}", i))
        .collect();
    let out_ty = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let fn_ptr = quote!(fn(#(#tys),*) #output);

    // `Worker::Args` and `Worker::Output` must be serde types, and rustc
    // reports an unmet bound at the span of the associated type's value.
    // `Output` is the user's own tokens; the `Args` tuple gets the span of
    // the parameter list (or of the only parameter's type, when that is one
    // token: a span covering several tokens needs the unstable
    // `Span::join`), so a type that cannot cross a process boundary is
    // reported where the user wrote it, not at `#[worker]`.
    let args_span = match tys.as_slice() {
        [ty] if ty.to_token_stream().into_iter().count() == 1 => ty.span(),
        _ => paren.span.join(),
    };
    let args_ty = tuple(&tys, args_span);
    let about = about(worker);

    quote! {
        #(#cfg_attrs)*
        #(#doc_attrs)*
        #[doc = #about]
        #[allow(non_camel_case_types)]
        #[derive(::core::clone::Clone, ::core::marker::Copy)]
        #vis struct #ident {}

        // The value is a constant, not a unit struct: clippy takes a call
        // through a unit struct (`worker(1);`) for a constructor "with no
        // effect".
        #(#cfg_attrs)*
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #vis const #ident: #ident = #ident {};

        #(#cfg_attrs)*
        const _: () = {
            impl #ident {
                #(#fn_attrs)*
                #[allow(clippy::too_many_arguments)]
                fn __multiproc_call(#(#inputs),*) #output #body
            }

            impl ::core::ops::Deref for #ident {
                type Target = #fn_ptr;
                fn deref(&self) -> &Self::Target {
                    // A constant fn pointer: promoted to a `'static` borrow.
                    &(Self::__multiproc_call as #fn_ptr)
                }
            }

            impl ::core::fmt::Debug for #ident {
                fn fmt(
                    &self,
                    __multiproc_f: &mut ::core::fmt::Formatter<'_>,
                ) -> ::core::fmt::Result {
                    __multiproc_f.write_str(<Self as ::multiproc::Worker>::NAME)
                }
            }

            impl ::multiproc::Worker for #ident {
                const NAME: &'static str =
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident));
                const ID: &'static str = ::core::concat!(
                    ::core::module_path!(),
                    "::",
                    ::core::stringify!(#ident),
                    "@",
                    ::core::line!(),
                    ":",
                    ::core::column!()
                );
                type Args = #args_ty;
                type Output = #out_ty;
                fn call(__multiproc_args: Self::Args) -> Self::Output {
                    let (#(#vars,)*) = __multiproc_args;
                    Self::__multiproc_call(#(#vars),*)
                }
            }

            #[::multiproc::__private::linkme::distributed_slice(::multiproc::__private::WORKERS)]
            #[linkme(crate = ::multiproc::__private::linkme)]
            static __MULTIPROC_ENTRY: ::multiproc::__private::WorkerEntry =
                ::multiproc::__private::WorkerEntry::new::<#ident>();

            #[::multiproc::__private::linkme::distributed_slice(::multiproc::__private::CHUNKS)]
            #[linkme(crate = ::multiproc::__private::linkme)]
            static __MULTIPROC_CHUNK: ::multiproc::__private::ChunkEntry =
                ::multiproc::__private::ChunkEntry::new::<#ident>();
        };
    }
}

/// `(A, B, ..,)` with its parentheses at `span`.
fn tuple(tys: &[&syn::Type], span: Span) -> Group {
    let mut group = Group::new(Delimiter::Parenthesis, quote!(#(#tys,)*));
    group.set_span(span);
    group
}

/// The paragraph added to the worker's docs: rustdoc shows the item as a
/// struct, so its documentation says which function it is and how it runs.
fn about(worker: &Worker<'_>) -> String {
    let name = worker.ident.to_string();
    let params: Vec<String> = worker
        .params
        .iter()
        .map(|p| format!("{}: {}", tidy(p.pat), tidy(p.ty)))
        .collect();
    let output = match worker.output {
        ReturnType::Default => String::new(),
        ReturnType::Type(_, ty) => format!(" -> {}", tidy(ty)),
    };
    let args: Vec<String> = worker
        .params
        .iter()
        .map(|p| match p.pat {
            syn::Pat::Ident(i) => i.ident.to_string(),
            _ => "_".to_string(),
        })
        .collect();
    let tuple = match args.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", args.join(", ")),
    };
    let gap = if worker.attrs.iter().any(|a| a.path().is_ident("doc")) {
        "\n\n"
    } else {
        ""
    };
    format!(
        "{gap}A [worker](multiproc::worker) function:\n\n\
         ```text\nfn {name}({params}){output}\n```\n\n\
         It runs in a child process with `Process::new({name}, {tuple})` (or in a \
         `Pool`), and `{name}({call})` calls it in this process.",
        params = params.join(", "),
        call = args.join(", "),
    )
}

/// Tokens as a person writes them: `Vec<String>`, not `Vec < String >`.
fn tidy(tokens: &impl ToTokens) -> String {
    let mut s = tokens.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" ;", ";"),
        ("mut  ", "mut "),
    ] {
        s = s.replace(from, to);
    }
    s
}
