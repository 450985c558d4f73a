//! TPP logos: what the platform accepts to store and serve on the consent page.
//!
//! The consent page may fetch nothing from outside the platform, so a TPP's logo is
//! copied in once (at registration or by an operator) and served by us. Only raster
//! formats a browser renders inertly are accepted: SVG can carry script and external
//! references, so it is refused rather than sanitised.

use base64::Engine as _;

/// Largest logo stored, in bytes: a consent-page logo is shown at 56 px.
pub const MAX_LOGO_BYTES: usize = 64 * 1024;
/// Smallest and largest accepted side, in pixels.
pub const MIN_SIDE: usize = 16;
pub const MAX_SIDE: usize = 1024;

/// A checked logo format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoType {
    Png,
    Jpeg,
    Webp,
}

impl LogoType {
    /// The `Content-Type` it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.trim().to_ascii_lowercase().as_str() {
            "image/png" => Some(Self::Png),
            "image/jpeg" | "image/jpg" => Some(Self::Jpeg),
            "image/webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// Why a logo was refused (the words go into `error_description`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoError {
    #[error("the logo is larger than 64 KiB")]
    TooLarge,
    #[error("the logo must be a PNG, JPEG or WebP image (SVG is not accepted)")]
    NotAnImage,
    #[error("the logo's content type does not match its bytes")]
    TypeMismatch,
    #[error("the logo must be between 16 and 1024 pixels on each side")]
    BadDimensions,
    #[error("logo_uri must be an https URL or a base64 data: URI of a PNG, JPEG or WebP image")]
    BadUri,
}

/// Check logo bytes: size, format by magic bytes (never by the declared type alone) and
/// dimensions from the header. `declared` is the content type the sender claimed, if any.
pub fn check_logo(bytes: &[u8], declared: Option<&str>) -> Result<LogoType, LogoError> {
    if bytes.len() > MAX_LOGO_BYTES {
        return Err(LogoError::TooLarge);
    }
    let kind = match imagesize::image_type(bytes) {
        Ok(imagesize::ImageType::Png) => LogoType::Png,
        Ok(imagesize::ImageType::Jpeg) => LogoType::Jpeg,
        Ok(imagesize::ImageType::Webp) => LogoType::Webp,
        _ => return Err(LogoError::NotAnImage),
    };
    if let Some(d) = declared {
        // Parameters such as `; charset=` mean nothing for images; compare the type only.
        let base = d.split(';').next().unwrap_or_default();
        if LogoType::from_content_type(base) != Some(kind) {
            return Err(LogoError::TypeMismatch);
        }
    }
    let size = imagesize::blob_size(bytes).map_err(|_| LogoError::NotAnImage)?;
    let ok = |s: usize| (MIN_SIDE..=MAX_SIDE).contains(&s);
    if !ok(size.width) || !ok(size.height) {
        return Err(LogoError::BadDimensions);
    }
    Ok(kind)
}

/// Where a registered `logo_uri` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoSource {
    /// To be fetched once, at registration (https only; the caller applies its
    /// address policy).
    Https(url::Url),
    /// Carried inline: the decoded bytes and the declared type, still to be checked.
    Inline {
        bytes: Vec<u8>,
        content_type: String,
    },
}

/// Parse a `logo_uri`: an https URL, or `data:image/<png|jpeg|webp>;base64,<data>`.
pub fn parse_logo_uri(uri: &str) -> Result<LogoSource, LogoError> {
    if let Some(rest) = uri.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or(LogoError::BadUri)?;
        let content_type = meta.strip_suffix(";base64").ok_or(LogoError::BadUri)?;
        LogoType::from_content_type(content_type).ok_or(LogoError::NotAnImage)?;
        // 4/3 of the byte limit plus padding: refuse before decoding a huge string.
        if data.len() > MAX_LOGO_BYTES / 3 * 4 + 8 {
            return Err(LogoError::TooLarge);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| LogoError::BadUri)?;
        return Ok(LogoSource::Inline {
            bytes,
            content_type: content_type.to_owned(),
        });
    }
    let url = url::Url::parse(uri).map_err(|_| LogoError::BadUri)?;
    if url.scheme() != "https" || url.host_str().is_none() || !url.username().is_empty() {
        return Err(LogoError::BadUri);
    }
    Ok(LogoSource::Https(url))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A minimal PNG header (signature + IHDR) of the given size; enough for the checks.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        v.extend_from_slice(&13u32.to_be_bytes());
        v.extend_from_slice(b"IHDR");
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn png_of_sane_size_is_accepted() {
        assert_eq!(check_logo(&png_header(64, 64), None), Ok(LogoType::Png));
        assert_eq!(
            check_logo(&png_header(64, 64), Some("image/png")),
            Ok(LogoType::Png)
        );
    }

    #[test]
    fn svg_and_text_are_refused() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
        assert_eq!(
            check_logo(svg, Some("image/svg+xml")),
            Err(LogoError::NotAnImage)
        );
        assert_eq!(
            check_logo(b"hello", Some("image/png")),
            Err(LogoError::NotAnImage)
        );
    }

    #[test]
    fn declared_type_must_match_the_bytes() {
        assert_eq!(
            check_logo(&png_header(64, 64), Some("image/jpeg")),
            Err(LogoError::TypeMismatch)
        );
        assert_eq!(
            check_logo(&png_header(64, 64), Some("text/html")),
            Err(LogoError::TypeMismatch)
        );
    }

    #[test]
    fn dimensions_and_size_are_bounded() {
        assert_eq!(
            check_logo(&png_header(8, 64), None),
            Err(LogoError::BadDimensions)
        );
        assert_eq!(
            check_logo(&png_header(64, 5000), None),
            Err(LogoError::BadDimensions)
        );
        let mut big = png_header(64, 64);
        big.resize(MAX_LOGO_BYTES + 1, 0);
        assert_eq!(check_logo(&big, None), Err(LogoError::TooLarge));
    }

    #[test]
    fn logo_uris() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(png_header(32, 32));
        match parse_logo_uri(&format!("data:image/png;base64,{b64}")).unwrap() {
            LogoSource::Inline {
                bytes,
                content_type,
            } => {
                assert_eq!(content_type, "image/png");
                assert_eq!(check_logo(&bytes, Some(&content_type)), Ok(LogoType::Png));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_logo_uri("https://tpp.example/logo.png"),
            Ok(LogoSource::Https(_))
        ));
        for bad in [
            "http://tpp.example/logo.png",
            "javascript:alert(1)",
            "data:image/png,rawbytes",
            "data:image/png;base64,@@@",
            "https://user@tpp.example/logo.png",
            "not a uri",
        ] {
            assert!(parse_logo_uri(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_logo_uri("data:image/svg+xml;base64,PHN2Zz4="),
            Err(LogoError::NotAnImage)
        );
    }
}
