//! Tag filters on MQTT 5 subscriptions: the user properties `x-tags` (a
//! comma-separated list; several add up) and `x-tag-match` (`any`, the
//! default, or `all`) on a SUBSCRIBE filter every subscription of that packet
//! as AMQP's `x-tags` / `x-tag-match` consumer arguments filter a consumer,
//! with the engine's [`TagFilter`] deciding which messages pass.
//!
//! A plain subscription is filtered here, at delivery (its session queue
//! feeds every subscription of the session); a `$share` subscription's filter
//! is its consumer group's, as an AMQP consumer's is. Malformed values are
//! refused with SUBACK 0x83 (the SUBSCRIBE is valid; the server does not
//! accept it, MQTT 5 § 3.9.3).

use gw_core::TagFilter;

/// The user property naming the tags.
const X_TAGS: &str = "x-tags";
/// The user property saying whether any or all of them must be present.
const X_TAG_MATCH: &str = "x-tag-match";

/// The filter a SUBSCRIBE's user properties ask for (`None`: no `x-tags`).
/// `Err` says what is wrong, for the SUBACK's reason string.
pub fn from_user_properties(props: &[(String, String)]) -> Result<Option<TagFilter>, String> {
    let mut tags: Vec<String> = Vec::new();
    let mut asked = false;
    let mut match_all = None;
    for (key, value) in props {
        match key.as_str() {
            X_TAGS => {
                asked = true;
                for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !tags.iter().any(|t| t == tag) {
                        tags.push(tag.to_owned());
                    }
                }
            }
            X_TAG_MATCH => {
                let all = match value.as_str() {
                    "any" => false,
                    "all" => true,
                    other => {
                        return Err(format!(
                            "{X_TAG_MATCH}: expected 'any' or 'all', got '{other}'"
                        ));
                    }
                };
                if match_all.is_some_and(|m| m != all) {
                    return Err(format!("{X_TAG_MATCH} given twice, differently"));
                }
                match_all = Some(all);
            }
            _ => {}
        }
    }
    if !asked {
        return Ok(None);
    }
    let filter = TagFilter {
        tags,
        match_all: match_all.unwrap_or(false),
    };
    filter.validate().map_err(|e| format!("{X_TAGS}: {e}"))?;
    Ok(Some(filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tags_add_up_and_match_defaults_to_any() {
        let f = from_user_properties(&props(&[("x-tags", " red, big ,red"), ("x-tags", "hot")]))
            .unwrap()
            .unwrap();
        assert_eq!(f.tags, ["red", "big", "hot"]);
        assert!(!f.match_all);
        let f = from_user_properties(&props(&[("x-tag-match", "all"), ("x-tags", "a,b")]))
            .unwrap()
            .unwrap();
        assert!(f.match_all);
        assert_eq!(from_user_properties(&props(&[("other", "x")])), Ok(None));
        // As the AMQP consumer argument: x-tag-match alone filters nothing.
        assert_eq!(
            from_user_properties(&props(&[("x-tag-match", "all")])),
            Ok(None)
        );
    }

    #[test]
    fn malformed_values_are_refused_with_a_reason() {
        let err = |entries: &[(&str, &str)]| from_user_properties(&props(entries)).unwrap_err();
        assert!(err(&[("x-tags", " , ")]).contains("names no tag"));
        assert_eq!(
            err(&[("x-tags", "a"), ("x-tag-match", "most")]),
            "x-tag-match: expected 'any' or 'all', got 'most'"
        );
        assert!(
            err(&[
                ("x-tags", "a"),
                ("x-tag-match", "any"),
                ("x-tag-match", "all")
            ])
            .contains("twice")
        );
        assert!(err(&[("x-tags", &"t".repeat(300))]).starts_with("x-tags: "));
    }
}
