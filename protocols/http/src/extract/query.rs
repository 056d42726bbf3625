//! A strict query string: each handler asks for the parameters it knows, and
//! [`Query::finish`] refuses whatever is left, so a misspelt `max_msg=5` is a
//! 400 naming it rather than silently using the default. DMS repeats `tag`
//! for lists (`tag=a&tag=b`), which serde's urlencoded deserializer cannot read.

use std::convert::Infallible;
use std::ops::RangeInclusive;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::{ApiError, code};

/// The decoded `name=value` pairs of a request's query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
    taken: Vec<bool>,
    known: Vec<&'static str>,
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Query::parse(parts.uri.query().unwrap_or("")))
    }
}

impl Query {
    /// Decodes a raw query string (`+` is a space, `%xx` escapes, invalid UTF-8 replaced).
    pub fn parse(raw: &str) -> Query {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        let taken = vec![false; pairs.len()];
        Query {
            pairs,
            taken,
            known: Vec::new(),
        }
    }

    /// Every value given for `name` (for repeatable parameters).
    pub fn all(&mut self, name: &'static str) -> Vec<String> {
        self.known.push(name);
        let mut out = Vec::new();
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if k == name {
                self.taken[i] = true;
                out.push(v.clone());
            }
        }
        out
    }

    /// The value of a parameter that may appear at most once.
    pub fn one(&mut self, name: &'static str) -> Result<Option<String>, ApiError> {
        let mut values = self.all(name);
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            n => Err(ApiError::invalid(
                name,
                format!("given {n} times; it may be given once"),
            )),
        }
    }

    /// An integer parameter within `range`; `code` is the DMS error code for it.
    pub fn int(
        &mut self,
        name: &'static str,
        range: RangeInclusive<u64>,
        code: &'static str,
    ) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.one(name)? else {
            return Ok(None);
        };
        let out_of_range = || {
            ApiError::invalid_with(
                code,
                name,
                format!(
                    "'{v}' is not an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        };
        let n: u64 = v.trim().parse().map_err(|_| out_of_range())?;
        if range.contains(&n) {
            Ok(Some(n))
        } else {
            Err(out_of_range())
        }
    }

    /// A signed integer parameter (paging values DMS treats leniently).
    pub fn signed(&mut self, name: &'static str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.one(name)? else {
            return Ok(None);
        };
        v.trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(name, format!("'{v}' is not an integer")))
    }

    /// A boolean parameter: `true` or `false` (any case).
    pub fn bool(&mut self, name: &'static str) -> Result<Option<bool>, ApiError> {
        let Some(v) = self.one(name)? else {
            return Ok(None);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(ApiError::invalid(
                name,
                format!("'{v}' is not true or false"),
            )),
        }
    }

    /// Refuses parameters no call above asked for.
    pub fn finish(&self) -> Result<(), ApiError> {
        let unknown: Vec<&str> = self
            .pairs
            .iter()
            .zip(&self.taken)
            .filter(|(_, taken)| !**taken)
            .map(|((k, _), _)| k.as_str())
            .collect();
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let accepted = if self.known.is_empty() {
            "none".to_owned()
        } else {
            let mut k = self.known.clone();
            k.dedup();
            k.join(", ")
        };
        Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            code::INVALID,
            format!("unknown query parameter '{first}' (accepted: {accepted})"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_typed_values_and_refuses_the_rest() {
        let mut q = Query::parse("max_msgs=5&tag=a&tag=b%2Dc&time_wait=61&flag=TRUE");
        assert_eq!(q.int("max_msgs", 1..=10, code::MAX_MSGS).unwrap(), Some(5));
        assert_eq!(q.all("tag"), vec!["a", "b-c"]);
        let e = q.int("time_wait", 1..=60, code::TIME_WAIT).unwrap_err();
        assert_eq!(e.code, code::TIME_WAIT);
        assert!(e.msg.contains("time_wait"));
        assert_eq!(q.bool("flag").unwrap(), Some(true));
        assert!(q.finish().is_ok());

        let mut q = Query::parse("max_msg=5");
        assert_eq!(q.int("max_msgs", 1..=10, code::MAX_MSGS).unwrap(), None);
        let e = q.finish().unwrap_err();
        assert!(
            e.msg.contains("'max_msg'") && e.msg.contains("max_msgs"),
            "{}",
            e.msg
        );

        let mut q = Query::parse("max_msgs=1&max_msgs=2");
        assert!(q.int("max_msgs", 1..=10, code::MAX_MSGS).is_err());
        let mut q = Query::parse("max_msgs=0");
        assert!(q.int("max_msgs", 1..=10, code::MAX_MSGS).is_err());
        let mut q = Query::parse("max_msgs=ten");
        assert!(q.int("max_msgs", 1..=10, code::MAX_MSGS).is_err());
        let mut q = Query::parse("b=maybe");
        assert!(q.bool("b").is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_any_query(raw in ".{0,200}") {
            let mut q = Query::parse(&raw);
            let _ = q.int("max_msgs", 1..=10, code::MAX_MSGS);
            let _ = q.bool("include_deadletter");
            let _ = q.signed("page_size");
            let _ = q.all("tag");
            let _ = q.finish();
        }
    }
}
