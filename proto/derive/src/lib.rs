//! `#[derive(Xdr)]`: XDR encode/decode generated from Rust type definitions, so the wire types
//! of every protocol in `proto` are written once, as data, and fuzzed through one code path.
//!
//! Mapping (RFC 4506):
//! - struct: fields in declaration order. `#[xdr(max = N)]` on a field bounds a variable-length
//!   array, opaque or string at decode time.
//! - enum whose variants are all unit variants with explicit discriminants: an XDR `enum`
//!   (4 bytes, unknown values are a decode error).
//! - any other enum: a discriminated union. Each variant carries `#[xdr(case = EXPR)]` (several
//!   allowed), unit variants are `void` arms, one-field variants carry the arm's body. One variant
//!   may be `#[xdr(default)]`: its first field is the discriminant (`u32`), an optional second the body.
//! - `#[xdr(list)]` on a `Vec<T>` struct field: an XDR linked list (`T *next` chains, e.g. READDIR
//!   entries): each element is preceded by TRUE, the list ends with FALSE. Decoding is iterative
//!   (no recursion) and bounded by `#[xdr(max = N)]` (default `DEFAULT_MAX`).
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Expr, Fields, Meta};

#[proc_macro_derive(Xdr, attributes(xdr))]
pub fn derive_xdr(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Default)]
struct XdrAttrs {
    cases: Vec<Expr>,
    default: bool,
    max: Option<Expr>,
    list: bool,
}

fn parse_attrs(attrs: &[syn::Attribute]) -> syn::Result<XdrAttrs> {
    let mut out = XdrAttrs::default();
    for attr in attrs {
        if !attr.path().is_ident("xdr") {
            continue;
        }
        let nested = attr.parse_args_with(
            syn::punctuated::Punctuated::<Meta, syn::Token![,]>::parse_terminated,
        )?;
        for meta in nested {
            match meta {
                Meta::Path(p) if p.is_ident("default") => out.default = true,
                Meta::Path(p) if p.is_ident("list") => out.list = true,
                Meta::NameValue(nv) if nv.path.is_ident("case") => out.cases.push(nv.value),
                Meta::NameValue(nv) if nv.path.is_ident("max") => out.max = Some(nv.value),
                other => {
                    return Err(syn::Error::new_spanned(other, "unknown xdr attribute"));
                }
            }
        }
    }
    Ok(out)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let (enc, dec) = match &input.data {
        Data::Struct(s) => expand_struct(&s.fields)?,
        Data::Enum(e) => {
            let all_unit = e.variants.iter().all(|v| matches!(v.fields, Fields::Unit));
            let any_case = e
                .variants
                .iter()
                .any(|v| v.attrs.iter().any(|a| a.path().is_ident("xdr")));
            if all_unit && !any_case {
                expand_c_enum(e)?
            } else {
                expand_union(e)?
            }
        }
        Data::Union(u) => {
            return Err(syn::Error::new_spanned(
                u.union_token,
                "Xdr cannot be derived for Rust unions",
            ))
        }
    };
    Ok(quote! {
        impl ::proto::xdr::Xdr for #name {
            fn encode(&self, w: &mut ::proto::xdr::Writer) {
                #enc
            }
            fn decode(r: &mut ::proto::xdr::Reader<'_>) -> ::core::result::Result<Self, ::proto::xdr::XdrError> {
                #dec
            }
        }
    })
}

fn field_decode(ty: &syn::Type, attrs: &XdrAttrs) -> TokenStream2 {
    if attrs.list {
        let max = match &attrs.max {
            Some(max) => quote! { (#max) as usize },
            None => quote! { ::proto::xdr::DEFAULT_MAX },
        };
        return quote! {{
            let max: usize = #max;
            let mut v = ::std::vec::Vec::new();
            while <bool as ::proto::xdr::Xdr>::decode(r)? {
                if v.len() >= max {
                    return Err(::proto::xdr::XdrError::TooLong { len: v.len() + 1, max });
                }
                v.push(::proto::xdr::Xdr::decode(r)?);
            }
            v
        }};
    }
    match &attrs.max {
        Some(max) => quote! { <#ty as ::proto::xdr::XdrBounded>::decode_max(r, (#max) as usize)? },
        None => quote! { <#ty as ::proto::xdr::Xdr>::decode(r)? },
    }
}

fn field_encode(place: TokenStream2, attrs: &XdrAttrs) -> TokenStream2 {
    if attrs.list {
        quote! {
            for x in &#place {
                w.u32(1);
                ::proto::xdr::Xdr::encode(x, w);
            }
            w.u32(0);
        }
    } else {
        quote! { ::proto::xdr::Xdr::encode(&#place, w); }
    }
}

fn expand_struct(fields: &Fields) -> syn::Result<(TokenStream2, TokenStream2)> {
    match fields {
        Fields::Named(named) => {
            let mut enc = Vec::new();
            let mut dec = Vec::new();
            for f in &named.named {
                let id = f.ident.as_ref().expect("named field");
                let attrs = parse_attrs(&f.attrs)?;
                let d = field_decode(&f.ty, &attrs);
                enc.push(field_encode(quote! { self.#id }, &attrs));
                dec.push(quote! { #id: #d });
            }
            Ok((quote! { #(#enc)* }, quote! { Ok(Self { #(#dec),* }) }))
        }
        Fields::Unnamed(unnamed) => {
            let mut enc = Vec::new();
            let mut dec = Vec::new();
            for (i, f) in unnamed.unnamed.iter().enumerate() {
                let idx = syn::Index::from(i);
                let attrs = parse_attrs(&f.attrs)?;
                let d = field_decode(&f.ty, &attrs);
                enc.push(field_encode(quote! { self.#idx }, &attrs));
                dec.push(d);
            }
            Ok((quote! { #(#enc)* }, quote! { Ok(Self(#(#dec),*)) }))
        }
        Fields::Unit => Ok((quote! { let _ = w; }, quote! { let _ = r; Ok(Self) })),
    }
}

fn expand_c_enum(e: &syn::DataEnum) -> syn::Result<(TokenStream2, TokenStream2)> {
    let mut enc = Vec::new();
    let mut dec = Vec::new();
    for v in &e.variants {
        let vid = &v.ident;
        let Some((_, disc)) = &v.discriminant else {
            return Err(syn::Error::new_spanned(
                v,
                "XDR enum variants need explicit discriminants",
            ));
        };
        enc.push(quote! { Self::#vid => (#disc) as i32 });
        dec.push(quote! { x if x == (#disc) as i32 => Ok(Self::#vid) });
    }
    Ok((
        quote! { let v: i32 = match self { #(#enc),* }; ::proto::xdr::Xdr::encode(&v, w); },
        quote! {
            let v = <i32 as ::proto::xdr::Xdr>::decode(r)?;
            match v { #(#dec,)* other => Err(::proto::xdr::XdrError::BadEnum(other as u32)) }
        },
    ))
}

fn expand_union(e: &syn::DataEnum) -> syn::Result<(TokenStream2, TokenStream2)> {
    let mut enc = Vec::new();
    let mut dec = Vec::new();
    let mut default_dec = None;
    for v in &e.variants {
        let vid = &v.ident;
        let attrs = parse_attrs(&v.attrs)?;
        let fields: Vec<&syn::Field> = v.fields.iter().collect();
        if attrs.default {
            // First field: the discriminant itself; optional second: the arm body.
            match fields.len() {
                1 => {
                    enc.push(quote! { Self::#vid(d) => { ::proto::xdr::Xdr::encode(d, w); } });
                    default_dec = Some(quote! { d => Ok(Self::#vid(d)) });
                }
                2 => {
                    let ty = &fields[1].ty;
                    let fa = parse_attrs(&fields[1].attrs)?;
                    let fd = field_decode(ty, &fa);
                    enc.push(quote! { Self::#vid(d, b) => { ::proto::xdr::Xdr::encode(d, w); ::proto::xdr::Xdr::encode(b, w); } });
                    default_dec = Some(quote! { d => Ok(Self::#vid(d, #fd)) });
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        v,
                        "default arm: (discriminant) or (discriminant, body)",
                    ))
                }
            }
            continue;
        }
        if attrs.cases.is_empty() {
            return Err(syn::Error::new_spanned(
                v,
                "union arm needs #[xdr(case = ...)] or #[xdr(default)]",
            ));
        }
        let first = &attrs.cases[0];
        let pats: Vec<TokenStream2> = attrs
            .cases
            .iter()
            .map(|c| quote! { x if x == (#c) as u32 })
            .collect();
        match fields.len() {
            0 => {
                enc.push(
                    quote! { Self::#vid => { ::proto::xdr::Xdr::encode(&((#first) as u32), w); } },
                );
                for p in pats {
                    dec.push(quote! { #p => Ok(Self::#vid) });
                }
            }
            1 => {
                let ty = &fields[0].ty;
                let fa = parse_attrs(&fields[0].attrs)?;
                let fd = field_decode(ty, &fa);
                let body = format_ident!("body");
                enc.push(quote! { Self::#vid(#body) => { ::proto::xdr::Xdr::encode(&((#first) as u32), w); ::proto::xdr::Xdr::encode(#body, w); } });
                for p in pats {
                    dec.push(quote! { #p => Ok(Self::#vid(#fd)) });
                }
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    v,
                    "union arms carry at most one body field",
                ))
            }
        }
    }
    let fallback = default_dec
        .unwrap_or_else(|| quote! { other => Err(::proto::xdr::XdrError::BadUnion(other)) });
    Ok((
        quote! { match self { #(#enc)* } },
        quote! {
            let d = <u32 as ::proto::xdr::Xdr>::decode(r)?;
            match d { #(#dec,)* #fallback }
        },
    ))
}
