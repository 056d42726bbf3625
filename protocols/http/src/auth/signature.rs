//! `SDK-HMAC-SHA256` request signatures: the AK/SK signing of Huawei Cloud's
//! SDKs (`huaweicloudsdkcore/signer/signer.py`), recomputed here exactly:
//!
//! ```text
//! canonical = METHOD \n URI/ \n sorted query \n signed headers (k:v\n each) \n k1;k2 \n hex(sha256(body))
//! to sign   = "SDK-HMAC-SHA256" \n X-Sdk-Date \n hex(sha256(canonical))
//! signature = hex(hmac_sha256(SK, to sign))
//! ```
//!
//! The URI is percent-decoded, split at `/`, each segment percent-encoded
//! again (all but `A-Za-z0-9-_.~`) and a `/` appended; the query is sorted
//! by (name, value) and encoded the same way; the body hash is the
//! `X-Sdk-Content-Sha256` header when given (`UNSIGNED-PAYLOAD`, or the
//! body's own hash: any other is a mismatch), else computed. `X-Sdk-Date` (`YYYYMMDDTHHMMSSZ`, UTC) must be signed and within
//! [`MAX_SKEW_SECS`] of our clock, so a captured request cannot be replayed
//! later. The comparison is constant-time.

use axum::http::{HeaderMap, Method};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The scheme word in `Authorization`.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The signing time header.
pub const DATE_HEADER: &str = "x-sdk-date";
/// The header that names the body hash instead of the body.
pub const CONTENT_SHA256_HEADER: &str = "x-sdk-content-sha256";
/// The `X-Sdk-Content-Sha256` value that leaves the body unsigned.
const UNSIGNED_PAYLOAD: &[u8] = b"UNSIGNED-PAYLOAD";
/// How far `X-Sdk-Date` may be from our clock (the SDKs' gateway uses 15 minutes).
pub const MAX_SKEW_SECS: u64 = 15 * 60;
/// Longest `Authorization` value we parse.
const MAX_HEADER_LEN: usize = 8 * 1024;

/// The parts of `Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAuth {
    /// The AK.
    pub access: String,
    /// Lower-case header names, in the order signed.
    pub signed_headers: Vec<String>,
    /// The 32-byte signature.
    pub signature: [u8; 32],
}

/// Why a signature was refused; each says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The `Authorization` value is not of the expected form.
    #[error("malformed SDK-HMAC-SHA256 Authorization header: {0}")]
    Malformed(&'static str),
    /// `X-Sdk-Date` is missing or not signed.
    #[error("X-Sdk-Date is required and must be among SignedHeaders")]
    NoDate,
    /// `X-Sdk-Date` is not `YYYYMMDDTHHMMSSZ`.
    #[error("X-Sdk-Date '{0}' is not of the form YYYYMMDDTHHMMSSZ")]
    BadDate(String),
    /// `X-Sdk-Date` is outside the replay window.
    #[error(
        "X-Sdk-Date '{0}' is more than 15 minutes from the server's time (request expired or clock skewed)"
    )]
    Stale(String),
    /// A header named in SignedHeaders is not in the request.
    #[error("signed header '{0}' is missing from the request")]
    MissingHeader(String),
    /// The signature does not match.
    #[error(
        "the request signature does not match (wrong SK, or the request was changed after signing)"
    )]
    Mismatch,
}

/// Parses an `Authorization` value of the SDK-HMAC-SHA256 scheme. `None`
/// when the value is of another scheme.
pub fn parse(value: &str) -> Option<Result<SignedAuth, SignatureError>> {
    let value = value.trim();
    let rest = value.strip_prefix(ALGORITHM)?;
    if !rest.starts_with(' ') {
        return if rest.is_empty() {
            Some(Err(SignatureError::Malformed(
                "no parameters after the scheme",
            )))
        } else {
            None
        };
    }
    Some(parse_params(rest))
}

fn parse_params(rest: &str) -> Result<SignedAuth, SignatureError> {
    use SignatureError::Malformed;
    if rest.len() > MAX_HEADER_LEN {
        return Err(Malformed("longer than 8 KiB"));
    }
    let (mut access, mut headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(Malformed("a parameter without '='"))?;
        let slot = match k.trim() {
            "Access" => &mut access,
            "SignedHeaders" => &mut headers,
            "Signature" => &mut signature,
            _ => {
                return Err(Malformed(
                    "unknown parameter (expected Access, SignedHeaders, Signature)",
                ));
            }
        };
        if slot.replace(v.trim()).is_some() {
            return Err(Malformed("a parameter given twice"));
        }
    }
    let access = access.ok_or(Malformed("no Access"))?;
    if access.is_empty() || !access.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Malformed("Access is not an access key"));
    }
    let headers = headers.ok_or(Malformed("no SignedHeaders"))?;
    let signed_headers: Vec<String> = headers.split(';').map(str::to_owned).collect();
    if signed_headers.iter().any(|h| {
        h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    }) {
        return Err(Malformed(
            "SignedHeaders must be lower-case header names separated by ';'",
        ));
    }
    let signature = signature.ok_or(Malformed("no Signature"))?;
    let mut sig = [0u8; 32];
    hex::decode_to_slice(signature, &mut sig)
        .map_err(|_| Malformed("Signature is not 64 hex digits"))?;
    Ok(SignedAuth {
        access: access.to_owned(),
        signed_headers,
        signature: sig,
    })
}

/// Seconds since the epoch of an `X-Sdk-Date` value.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(se).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// RFC 3986 percent-encoding of everything but unreserved characters
/// (Python's `quote(s, safe='~')`).
fn encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

/// Percent-decoding (no `+` → space: the SDK encodes spaces as `%20`).
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The canonical URI: each path segment decoded then encoded, ending in `/`.
pub fn canonical_uri(path: &str) -> String {
    let decoded = decode(path);
    let mut out = String::with_capacity(path.len() + 8);
    for (i, seg) in decoded.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode(seg, &mut out);
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The canonical query: pairs sorted by (name, value), each encoded, joined by `&`.
pub fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), Vec::new()),
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(q.len() + 8);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(k, &mut out);
        out.push('=');
        encode(v, &mut out);
    }
    out
}

/// What a request offers to be verified against.
pub struct Request<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its path as sent (percent-encoded).
    pub path: &'a str,
    /// Its query as sent, if any.
    pub query: Option<&'a str>,
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its body.
    pub body: &'a [u8],
}

/// The canonical request the SDK signs (see the module doc).
pub fn canonical_request(req: &Request<'_>, signed: &[String]) -> Result<String, SignatureError> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method.as_str());
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            .collect();
        if values.is_empty() {
            return Err(SignatureError::MissingHeader(name.clone()));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    // The Python signer ends the header block with "\n" and then joins the
    // parts with "\n": a blank line before the signed-header list.
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    // A named body hash stands for the body only when it is the body's (a
    // signed hash of another body must not let a changed body through);
    // `UNSIGNED-PAYLOAD` is the SDKs' explicit opt-out.
    let computed = hex::encode(Sha256::digest(req.body));
    match req.headers.get(CONTENT_SHA256_HEADER).map(|v| v.as_bytes()) {
        Some(UNSIGNED_PAYLOAD) => out.push_str("UNSIGNED-PAYLOAD"),
        Some(named) if named.eq_ignore_ascii_case(computed.as_bytes()) => {
            out.push_str(&String::from_utf8_lossy(named));
        }
        Some(_) => return Err(SignatureError::Mismatch),
        None => out.push_str(&computed),
    }
    Ok(out)
}

/// The string to sign for a canonical request and its `X-Sdk-Date`.
pub fn string_to_sign(canonical: &str, date: &str) -> String {
    format!(
        "{ALGORITHM}\n{date}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

/// HMAC-SHA256 of `data` with `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Checks the date and the signature of a request with the key's SK.
/// `now` is seconds since the epoch.
pub fn verify(
    auth: &SignedAuth,
    req: &Request<'_>,
    secret: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    if !auth.signed_headers.iter().any(|h| h == DATE_HEADER) {
        return Err(SignatureError::NoDate);
    }
    let date = req
        .headers
        .get(DATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(SignatureError::NoDate)?
        .trim();
    let at = parse_date(date).ok_or_else(|| SignatureError::BadDate(date.to_owned()))?;
    if at.abs_diff(now) > MAX_SKEW_SECS {
        return Err(SignatureError::Stale(date.to_owned()));
    }
    let canonical = canonical_request(req, &auth.signed_headers)?;
    let expected = hmac_sha256(secret, string_to_sign(&canonical, date).as_bytes());
    if bool::from(expected.ct_eq(&auth.signature)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_parts_match_the_python_signer() {
        // Python: quote(unquote(seg), safe='~') per segment, trailing '/'.
        assert_eq!(canonical_uri("/v2/p/queues"), "/v2/p/queues/");
        assert_eq!(canonical_uri("/v2/%2F/queues/a b/"), "/v2///queues/a%20b/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(
            canonical_query(Some("time_wait=3&max_msgs=10&tag=b&tag=a")),
            "max_msgs=10&tag=a&tag=b&time_wait=3"
        );
        assert_eq!(canonical_query(Some("a=%7E%20x&b")), "a=~%20x&b=");
        assert_eq!(canonical_query(None), "");
    }

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_date("20261202T074648Z"), Some(1_796_197_608));
        for bad in [
            "20261302T074648Z",
            "2026120T074648Z",
            "20261202 074648Z",
            "+0261202T074648Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    /// The example the SDK's own tests sign (recomputed with Python's signer).
    #[test]
    fn verifies_what_the_sdk_signs_and_nothing_else() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("x-sdk-date", "20261202T074648Z".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let body = br#"{"name":"q"}"#;
        let req = Request {
            method: &Method::POST,
            path: "/v2/abc/queues",
            query: None,
            headers: &headers,
            body,
        };
        let signed: Vec<String> = ["content-type", "host", "x-sdk-date"]
            .map(str::to_owned)
            .to_vec();
        let canonical = canonical_request(&req, &signed).unwrap();
        assert_eq!(
            canonical,
            format!(
                "POST\n/v2/abc/queues/\n\ncontent-type:application/json\nhost:127.0.0.1:8080\nx-sdk-date:20261202T074648Z\n\ncontent-type;host;x-sdk-date\n{}",
                hex::encode(Sha256::digest(body))
            )
        );
        let sig = hmac_sha256(
            b"SK",
            string_to_sign(&canonical, "20261202T074648Z").as_bytes(),
        );
        let auth = SignedAuth {
            access: "AK".into(),
            signed_headers: signed,
            signature: sig,
        };
        let now = 1_796_197_608;
        assert_eq!(verify(&auth, &req, b"SK", now), Ok(()));
        assert_eq!(
            verify(&auth, &req, b"SK2", now),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(&auth, &req, b"SK", now + 901),
            Err(SignatureError::Stale(_))
        ));
        let tampered = Request {
            body: br#"{"name":"r"}"#,
            ..req
        };
        assert_eq!(
            verify(&auth, &tampered, b"SK", now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn parses_the_authorization_header() {
        let sig = "a".repeat(64);
        let v =
            format!("SDK-HMAC-SHA256 Access=AK12, SignedHeaders=host;x-sdk-date, Signature={sig}");
        let a = parse(&v).unwrap().unwrap();
        assert_eq!(a.access, "AK12");
        assert_eq!(a.signed_headers, ["host", "x-sdk-date"]);
        assert_eq!(parse("Basic Z3Vlc3Q6Z3Vlc3Q="), None);
        assert_eq!(parse("SDK-HMAC-SHA256X Access=1"), None);
        for bad in [
            "SDK-HMAC-SHA256",
            "SDK-HMAC-SHA256 Access=AK",
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=Host, Signature=00",
            "SDK-HMAC-SHA256 Access=A K, SignedHeaders=host, Signature=00",
        ] {
            assert!(matches!(parse(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn a_named_body_hash_must_be_the_bodys() {
        let body = br#"{"name":"q"}"#;
        let mut headers = HeaderMap::new();
        headers.insert("x-sdk-date", "20261202T074648Z".parse().unwrap());
        fn req<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Request<'a> {
            Request {
                method: &Method::POST,
                path: "/v2/p/queues",
                query: None,
                headers,
                body,
            }
        }
        let signed = vec!["x-sdk-date".to_owned()];
        let own = hex::encode(Sha256::digest(body));
        headers.insert(CONTENT_SHA256_HEADER, own.parse().unwrap());
        assert!(
            canonical_request(&req(&headers, body), &signed)
                .unwrap()
                .ends_with(&own)
        );
        headers.insert(CONTENT_SHA256_HEADER, "UNSIGNED-PAYLOAD".parse().unwrap());
        assert!(
            canonical_request(&req(&headers, body), &signed)
                .unwrap()
                .ends_with("\nUNSIGNED-PAYLOAD")
        );
        let other = hex::encode(Sha256::digest(b"another body"));
        headers.insert(CONTENT_SHA256_HEADER, other.parse().unwrap());
        assert_eq!(
            canonical_request(&req(&headers, body), &signed),
            Err(SignatureError::Mismatch)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// Any Authorization value parses or is refused, never panics; and
        /// path and query canonicalisation take any input.
        #[test]
        fn parsing_takes_any_input(value in ".{0,200}", path in ".{0,80}", query in ".{0,80}") {
            let _ = parse(&format!("SDK-HMAC-SHA256 {value}"));
            let _ = parse(&value);
            let _ = canonical_uri(&path);
            let _ = canonical_query(Some(&query));
        }

        /// What we render parses back to the same parts.
        #[test]
        fn rendered_headers_parse_back(
            access in "[A-Z0-9]{1,30}",
            names in proptest::collection::vec("[a-z0-9_-]{1,20}", 1..6),
            signature in proptest::array::uniform32(proptest::num::u8::ANY),
        ) {
            let value = format!(
                "SDK-HMAC-SHA256 Access={access}, SignedHeaders={}, Signature={}",
                names.join(";"),
                hex::encode(signature)
            );
            let parsed = parse(&value).unwrap().unwrap();
            proptest::prop_assert_eq!(parsed, SignedAuth { access, signed_headers: names, signature });
        }

        /// A signature over a body verifies, and no longer once any byte of
        /// the body changed.
        #[test]
        fn a_changed_body_never_verifies(
            body in proptest::collection::vec(proptest::num::u8::ANY, 1..512),
            secret in "[A-Za-z0-9]{40}",
            at in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut headers = HeaderMap::new();
            headers.insert("x-sdk-date", "20261202T074648Z".parse().unwrap());
            let signed = vec!["x-sdk-date".to_owned()];
            let req = Request { method: &Method::POST, path: "/v2/p/queues", query: None, headers: &headers, body: &body };
            let canonical = canonical_request(&req, &signed).unwrap();
            let auth = SignedAuth {
                access: "AK".into(),
                signed_headers: signed,
                signature: hmac_sha256(secret.as_bytes(), string_to_sign(&canonical, "20261202T074648Z").as_bytes()),
            };
            let now = 1_796_197_608;
            proptest::prop_assert_eq!(verify(&auth, &req, secret.as_bytes(), now), Ok(()));
            let mut changed = body.clone();
            changed[at.index(body.len())] ^= flip;
            let tampered = Request { body: &changed, ..req };
            proptest::prop_assert_eq!(verify(&auth, &tampered, secret.as_bytes(), now), Err(SignatureError::Mismatch));
        }
    }
}
