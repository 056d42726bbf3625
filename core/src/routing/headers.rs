//! Headers-exchange matching (`x-match` = `all` | `any` | `all-with-x` | `any-with-x`),
//! as RabbitMQ does it: binding arguments whose names start with `x-` are not
//! compared unless the mode ends in `-with-x`; a binding argument of type void
//! only asks for the header to be present.

use crate::message::{HeaderValue, Headers};

/// A compiled headers binding.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HeaderMatch {
    all: bool,
    with_x: bool,
    wanted: Vec<(String, HeaderValue)>,
}

impl HeaderMatch {
    /// Builds the matcher from binding arguments; an unknown `x-match` is an error text.
    pub fn from_arguments(args: &Headers) -> Result<Self, String> {
        let (all, with_x) = match args.get("x-match").map(|v| v.as_str()) {
            None => (true, false),
            Some(Some("all")) => (true, false),
            Some(Some("any")) => (false, false),
            Some(Some("all-with-x")) => (true, true),
            Some(Some("any-with-x")) => (false, true),
            Some(other) => return Err(format!("invalid x-match value {other:?}")),
        };
        let wanted = args
            .iter()
            .filter(|(k, _)| *k != "x-match" && (with_x || !k.starts_with("x-")))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Ok(HeaderMatch {
            all,
            with_x,
            wanted,
        })
    }

    /// True when a message with these headers is routed by this binding.
    pub fn matches(&self, headers: &Headers) -> bool {
        let hit = |(k, v): &(String, HeaderValue)| match headers.get(k) {
            None => false,
            Some(_) if *v == HeaderValue::Void => true,
            Some(h) => h == v,
        };
        if self.all {
            self.wanted.iter().all(hit)
        } else {
            self.wanted.iter().any(hit)
        }
    }

    /// Whether `x-` headers take part (only for the `-with-x` modes).
    #[cfg(test)]
    fn with_x(&self) -> bool {
        self.with_x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, HeaderValue)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn all_and_any() {
        let s = HeaderValue::string;
        let all = HeaderMatch::from_arguments(&h(&[
            ("x-match", s("all")),
            ("a", s("1")),
            ("b", HeaderValue::Void),
        ]))
        .unwrap();
        let any =
            HeaderMatch::from_arguments(&h(&[("x-match", s("any")), ("a", s("1")), ("b", s("2"))]))
                .unwrap();
        assert!(all.matches(&h(&[("a", s("1")), ("b", HeaderValue::I32(7))])));
        assert!(!all.matches(&h(&[("a", s("1"))])));
        assert!(any.matches(&h(&[("b", s("2"))])));
        assert!(!any.matches(&h(&[("b", s("3"))])));
        assert!(!any.matches(&Headers::new()));
        // An empty all-binding matches everything, as in RabbitMQ.
        assert!(
            HeaderMatch::from_arguments(&Headers::new())
                .unwrap()
                .matches(&Headers::new())
        );
    }

    #[test]
    fn x_headers_only_with_x() {
        let s = HeaderValue::string;
        let plain =
            HeaderMatch::from_arguments(&h(&[("x-match", s("all")), ("x-k", s("1"))])).unwrap();
        assert!(plain.matches(&Headers::new()));
        let with =
            HeaderMatch::from_arguments(&h(&[("x-match", s("all-with-x")), ("x-k", s("1"))]))
                .unwrap();
        assert!(with.with_x());
        assert!(!with.matches(&Headers::new()));
        assert!(with.matches(&h(&[("x-k", s("1"))])));
        assert!(HeaderMatch::from_arguments(&h(&[("x-match", s("some"))])).is_err());
    }
}
