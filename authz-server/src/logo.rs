//! TPP logos served by the platform: the consent page and the dashboard show a TPP's
//! logo without any request leaving the platform (issue 6). Logos come in through
//! registration (`logo_uri`, copied once; see `routes::register`), the developer portal,
//! or, for the sandbox TPPs, are drawn here at first start.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// RFC 3986 unreserved characters stay as they are; everything else is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `/clients/<id>/logo`, the id percent-encoded (ids come from registration and config).
pub fn logo_path(client_id: &str) -> String {
    format!("/clients/{}/logo", utf8_percent_encode(client_id, SEGMENT))
}

pub fn logo_path_abs(issuer: &str, client_id: &str) -> String {
    format!("{issuer}{}", logo_path(client_id))
}

/// The `src` a page uses for the client's logo, with the digest as a cache-buster; `None`
/// when the client has none (the page then shows its initial). A store error only costs
/// the picture, never the page.
pub async fn logo_src(st: &AppState, client_id: &str) -> Option<String> {
    let logos = st.store.logos()?;
    match logos.logo_digest(client_id).await {
        Ok(Some(d)) => Some(format!(
            "{}?v={}",
            logo_path(client_id),
            d.get(..16).unwrap_or(&d)
        )),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading a client logo digest");
            None
        }
    }
}

/// `GET /clients/{client_id}/logo`: the stored image, as an inert resource. It was
/// checked to be PNG/JPEG/WebP when stored; `nosniff` (set on the listener), a sandboxed
/// CSP and same-origin resource policy keep it from ever acting as a document.
pub async fn get_logo(
    State(st): State<Arc<AppState>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(logos) = st.store.logos() else {
        return not_found();
    };
    let logo = match logos.find_logo(&client_id).await {
        Ok(Some(l)) => l,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "reading a client logo");
            return (StatusCode::SERVICE_UNAVAILABLE, "logo unavailable").into_response();
        }
    };
    let etag = format!("\"{}\"", logo.sha256);
    let mut r = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        logo.bytes.into_response()
    };
    let h = r.headers_mut();
    if let Ok(ct) = HeaderValue::from_str(&logo.content_type) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Pages link `?v=<digest>`, so a changed logo has a new URL; an hour bounds how long
    // a stale one can show when someone links without it.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no logo for this client").into_response()
}

/// A recognisable, deterministic logo for a sandbox TPP: a 5×5 mirrored pattern in a
/// colour picked from the id's digest, 80×80 PNG. Real TPPs bring their own.
pub fn identicon_png(seed: &str) -> anyhow::Result<Vec<u8>> {
    // Colours dark enough to stand out on white.
    const PALETTE: [[u8; 3]; 6] = [
        [0x1d, 0x4e, 0x89],
        [0x0b, 0x6e, 0x4f],
        [0x8a, 0x1c, 0x4a],
        [0x6b, 0x3f, 0xa0],
        [0xa4, 0x4a, 0x00],
        [0x00, 0x6d, 0x77],
    ];
    const CELL: usize = 12;
    const MARGIN: usize = 10;
    const SIDE: usize = CELL * 5 + MARGIN * 2;
    let d = Sha256::digest(seed.as_bytes());
    let colour = PALETTE[usize::from(d[0]) % PALETTE.len()];
    // Columns 0..3 from the digest bits; 3 and 4 mirror 1 and 0.
    let on = |row: usize, col: usize| {
        let c = if col > 2 { 4 - col } else { col };
        let bit = row * 3 + c;
        d[1 + bit / 8] >> (bit % 8) & 1 == 1
    };
    let mut px = vec![0xffu8; SIDE * SIDE * 3];
    for y in 0..SIDE {
        for x in 0..SIDE {
            let inside =
                (MARGIN..SIDE - MARGIN).contains(&x) && (MARGIN..SIDE - MARGIN).contains(&y);
            if inside && on((y - MARGIN) / CELL, (x - MARGIN) / CELL) {
                let i = (y * SIDE + x) * 3;
                px[i..i + 3].copy_from_slice(&colour);
            }
        }
    }
    let mut out = Vec::new();
    {
        let side = u32::try_from(SIDE)?;
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&px)?;
        w.finish()?;
    }
    Ok(out)
}

/// Give every sandbox TPP its drawn logo unless it has one (a logo set through the
/// portal or by an operator is kept).
pub async fn seed_sandbox_logos(
    store: &dyn authz_store::DurableStore,
    client_ids: impl Iterator<Item = &str>,
    now: i64,
) -> anyhow::Result<()> {
    let Some(logos) = store.logos() else {
        return Ok(());
    };
    for id in client_ids {
        if logos
            .logo_digest(id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .is_none()
        {
            let png = identicon_png(id)?;
            // Our own drawing still passes the same check as anything a TPP sends.
            let kind = authz_core::logo::check_logo(&png, None)
                .map_err(|e| anyhow::anyhow!("sandbox logo for {id}: {e}"))?;
            logos
                .put_logo(id, kind.content_type(), &png, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identicons_are_valid_distinct_pngs() {
        let a = identicon_png("sandbox-tpp-mtls").unwrap();
        let b = identicon_png("sandbox-tpp-pkjwt").unwrap();
        assert_eq!(
            authz_core::logo::check_logo(&a, Some("image/png")),
            Ok(authz_core::logo::LogoType::Png)
        );
        assert_ne!(a, b);
        assert_eq!(a, identicon_png("sandbox-tpp-mtls").unwrap());
        // Decodes as an 80×80 image.
        let dec = png::Decoder::new(std::io::Cursor::new(a));
        let r = dec.read_info().unwrap();
        assert_eq!((r.info().width, r.info().height), (80, 80));
    }

    #[test]
    fn paths_encode_the_id() {
        assert_eq!(logo_path("sandbox-tpp"), "/clients/sandbox-tpp/logo");
        assert_eq!(logo_path("a/b?c"), "/clients/a%2Fb%3Fc/logo");
    }
}
