//! Code generation for `#[worker]`.
//!
//! `#[worker] fn square(x: i64) -> i64 { .. }` becomes a unit struct `square`
//! (so the name, used as a value, is a type that implements
//! `multiproc::Worker`) that dereferences to `fn(i64) -> i64` (so
//! `square(3)` still calls the function in this process), plus a link-time
//! registry entry that a re-executed child looks up by name.

use crate::ast::Worker;
use crate::valid;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ReturnType};

pub(crate) fn worker(args: TokenStream, item: ItemFn) -> TokenStream {
    match valid::check(&args, &item) {
        Ok(worker) => generate(&worker),
        // Keep the user's function so one mistake does not cascade into
        // "cannot find function" errors at every call site.
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#item #error)
        }
    }
}

fn generate(worker: &Worker<'_>) -> TokenStream {
    let Worker {
        attrs,
        vis,
        ident,
        params,
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
    let pats = params.iter().map(|p| p.pat);
    let vars: Vec<_> = (0..params.len())
        .map(|i| format_ident!("__multiproc_arg{}", i))
        .collect();
    let out_ty = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let fn_ptr = quote!(fn(#(#tys),*) #output);

    // One check per type, spanned on the type itself, so a type that cannot
    // cross a process boundary is reported where the user wrote it.
    let mut checked: Vec<&syn::Type> = tys.clone();
    if let ReturnType::Type(_, ty) = output {
        checked.push(ty);
    }
    let checks = checked.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            ::multiproc::__private::assert_transferable::<#ty>();
        }
    });

    quote! {
        #(#cfg_attrs)*
        #(#doc_attrs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        #vis struct #ident;

        #(#cfg_attrs)*
        impl #ident {
            #(#fn_attrs)*
            #[allow(clippy::too_many_arguments)]
            fn __multiproc_call(#(#pats: #tys),*) #output #body
        }

        #(#cfg_attrs)*
        impl ::core::ops::Deref for #ident {
            type Target = #fn_ptr;
            fn deref(&self) -> &Self::Target {
                static CALL: #fn_ptr = #ident::__multiproc_call;
                &CALL
            }
        }

        #(#cfg_attrs)*
        impl ::core::fmt::Debug for #ident {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(<Self as ::multiproc::Worker>::NAME)
            }
        }

        #(#cfg_attrs)*
        impl ::multiproc::Worker for #ident {
            const NAME: &'static str =
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident));
            type Args = (#(#tys,)*);
            type Output = #out_ty;
            fn call(args: Self::Args) -> Self::Output {
                let (#(#vars,)*) = args;
                #ident::__multiproc_call(#(#vars),*)
            }
        }

        #(#cfg_attrs)*
        const _: () = {
            #(#checks)*
            #[::multiproc::__private::linkme::distributed_slice(::multiproc::__private::WORKERS)]
            #[linkme(crate = ::multiproc::__private::linkme)]
            static WORKER: ::multiproc::__private::WorkerEntry =
                ::multiproc::__private::WorkerEntry::new::<#ident>();
        };
    }
}
