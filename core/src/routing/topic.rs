//! Topic-exchange matching, AMQP 0-9-1 semantics as RabbitMQ implements them:
//! a binding key is a pattern of `.`-separated words where `*` stands for
//! exactly one word and `#` for zero or more, anywhere in the pattern.
//!
//! Two ways to match, one set of rules: [`TopicTrie`] matches a routing key
//! against every binding of an exchange at once; [`topic_matches`] matches it
//! against one pattern (the MQTT door re-checks a delivery against each of a
//! session's subscriptions with it). Both split keys with [`Words`], so the
//! edge cases agree by construction, and a property test below holds them to it:
//! - the empty key (or pattern) has no words: `#` matches it, `*` does not,
//!   and the pattern `""` matches only the key `""`;
//! - every `.` separates, so `"a..b"` has an empty middle word and `"a."` an
//!   empty last one; an empty word is matched by `*` and by itself;
//! - `#` may swallow nothing: `"a.#"` matches `"a"`, `"#.a"` matches `"a"`,
//!   and `"a.#.b"` matches `"a.b"`;
//! - `*` and `#` are wildcards only as whole words (`"a*"` is a literal).

use std::collections::HashMap;

/// The words of a routing key or binding key, as topic matching sees them: a
/// cursor that can be copied to resume matching from any position.
#[derive(Clone, Copy, Debug)]
struct Words<'a> {
    text: &'a str,
    /// Byte offset of the next word; `None` once every word was read.
    next: Option<usize>,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        // "" has no words ("#" matches it, "*" does not); "a..b" has an empty middle word.
        Words {
            text,
            next: (!text.is_empty()).then_some(0),
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.next?;
        let rest = self.text.get(start..)?;
        match rest.find('.') {
            Some(dot) => {
                self.next = Some(start + dot + 1);
                rest.get(..dot)
            }
            None => {
                self.next = None;
                Some(rest)
            }
        }
    }
}

/// Does `routing_key` match the topic binding key `pattern` (`*` one word,
/// `#` zero or more, see the module doc)? The same answer as a topic
/// exchange holding that one binding; no allocation, and time proportional
/// to the product of the word counts at worst (one back-tracking point, the
/// last `#`, as in glob matching), however many `#` the pattern holds.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let mut pat = Words::new(pattern);
    let mut key = Words::new(routing_key);
    // After the last `#` seen: the pattern after it, and the key position up
    // to which it has swallowed words. A later mismatch lets it swallow one more.
    let mut last_hash: Option<(Words, Words)> = None;
    loop {
        let key_here = key;
        match (pat.next(), key.next()) {
            (Some("#"), _) => {
                key = key_here;
                last_hash = Some((pat, key_here));
            }
            (Some(p), Some(k)) if p == "*" || p == k => {}
            (None, None) => return true,
            _ => {
                let Some((after_hash, mut swallowed)) = last_hash else {
                    return false;
                };
                if swallowed.next().is_none() {
                    return false;
                }
                last_hash = Some((after_hash, swallowed));
                pat = after_hash;
                key = swallowed;
            }
        }
    }
}

/// Destinations bound by pattern; `T` is compared with `PartialEq` to unbind.
#[derive(Debug)]
pub(crate) struct TopicTrie<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    words: Children<T>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            words: Children::Few(Vec::new()),
            star: None,
            hash: None,
            values: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

/// A node's children by word. Most nodes have a handful, kept in a vector
/// (a hash map costs ~300 bytes even for one entry, and MQTT deployments have a
/// node per device); a node with many switches to a hash map, boxed so that
/// the enum is a vector's 24 bytes in every leaf.
#[derive(Debug)]
enum Children<T> {
    Few(Vec<(Box<str>, Node<T>)>),
    // The box is the point: a bare HashMap would make every leaf 48 bytes.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Box<str>, Node<T>>>),
}

const FEW: usize = 8;

impl<T> Children<T> {
    fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }

    fn get(&self, w: &str) -> Option<&Node<T>> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| &**k == w).map(|(_, n)| n),
            Children::Many(m) => m.get(w),
        }
    }

    fn get_mut(&mut self, w: &str) -> Option<&mut Node<T>> {
        match self {
            Children::Few(v) => v.iter_mut().find(|(k, _)| &**k == w).map(|(_, n)| n),
            Children::Many(m) => m.get_mut(w),
        }
    }

    fn entry(&mut self, w: &str) -> &mut Node<T> {
        if let Children::Few(v) = self
            && v.len() >= FEW
            && !v.iter().any(|(k, _)| &**k == w)
        {
            *self = Children::Many(Box::new(std::mem::take(v).into_iter().collect()));
        }
        match self {
            Children::Few(v) => {
                let i = match v.iter().position(|(k, _)| &**k == w) {
                    Some(i) => i,
                    None => {
                        // Exact growth: most nodes keep one or two children forever.
                        v.reserve_exact(1);
                        v.push((w.into(), Node::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            Children::Many(m) => m.entry(w.into()).or_default(),
        }
    }

    fn remove(&mut self, w: &str) {
        match self {
            Children::Few(v) => v.retain(|(k, _)| &**k != w),
            Children::Many(m) => {
                m.remove(w);
            }
        }
    }
}

impl<T: PartialEq + Clone> TopicTrie<T> {
    pub fn new() -> Self {
        TopicTrie {
            root: Node::default(),
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds a binding; returns false when that exact binding existed.
    pub fn insert(&mut self, pattern: &str, value: T) -> bool {
        let mut node = &mut self.root;
        for w in Words::new(pattern) {
            node = match w {
                "*" => node.star.get_or_insert_with(Default::default),
                "#" => node.hash.get_or_insert_with(Default::default),
                _ => node.words.entry(w),
            };
        }
        if node.values.contains(&value) {
            return false;
        }
        node.values.reserve_exact(1);
        node.values.push(value);
        self.len += 1;
        true
    }

    /// Removes a binding; returns false when it was not there.
    pub fn remove(&mut self, pattern: &str, value: &T) -> bool {
        let ws: Vec<&str> = Words::new(pattern).collect();
        let removed = remove_at(&mut self.root, &ws, value);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Appends every value whose pattern matches `key` (a value bound by two
    /// matching patterns appears twice; callers deduplicate).
    pub fn matches(&self, key: &str, out: &mut Vec<T>) {
        let ws: Vec<&str> = Words::new(key).collect();
        match_at(&self.root, &ws, out);
    }
}

fn remove_at<T: PartialEq>(node: &mut Node<T>, ws: &[&str], value: &T) -> bool {
    let Some((first, rest)) = ws.split_first() else {
        let before = node.values.len();
        node.values.retain(|v| v != value);
        return node.values.len() < before;
    };
    let (removed, empty) = match *first {
        "*" => match node.star.as_deref_mut() {
            Some(child) => (remove_at(child, rest, value), child.is_empty()),
            None => return false,
        },
        "#" => match node.hash.as_deref_mut() {
            Some(child) => (remove_at(child, rest, value), child.is_empty()),
            None => return false,
        },
        w => match node.words.get_mut(w) {
            Some(child) => (remove_at(child, rest, value), child.is_empty()),
            None => return false,
        },
    };
    if empty {
        match *first {
            "*" => node.star = None,
            "#" => node.hash = None,
            w => {
                node.words.remove(w);
            }
        }
    }
    removed
}

fn match_at<T: Clone>(node: &Node<T>, ws: &[&str], out: &mut Vec<T>) {
    if let Some(h) = &node.hash {
        // `#` swallows zero or more words: try every split.
        for i in 0..=ws.len() {
            match_at(h, &ws[i..], out);
        }
    }
    let Some((first, rest)) = ws.split_first() else {
        out.extend(node.values.iter().cloned());
        return;
    };
    if let Some(child) = node.words.get(first) {
        match_at(child, rest, out);
    }
    if let Some(s) = &node.star {
        match_at(s, rest, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RabbitMQ's own table (rabbit's exchange type topic test suite): the
    /// bindings t1..t26 and, for each routing key, the bindings it must reach.
    #[test]
    fn rabbitmq_topic_table() {
        let bindings = [
            ("a.b.c", 1),
            ("a.*.c", 2),
            ("a.#.b", 3),
            ("a.b.b.c", 4),
            ("#", 5),
            ("#.#", 6),
            ("#.b", 7),
            ("*.*", 8),
            ("a.*", 9),
            ("*.b.c", 10),
            ("a.#", 11),
            ("a.#.#", 12),
            ("b.b.c", 13),
            ("a.b.b", 14),
            ("a.b", 15),
            ("b.c", 16),
            ("", 17),
            ("*.*.*", 18),
            ("vodka.martini", 19),
            ("a.b.c", 20),
            ("*.#", 21),
            ("#.*.#", 22),
            ("*.#.#", 23),
            ("#.#.#", 24),
            ("*", 25),
            ("#.b.#", 26),
        ];
        let mut trie = TopicTrie::new();
        for (p, v) in bindings {
            assert!(trie.insert(p, v));
        }
        let cases: &[(&str, &[i32])] = &[
            (
                "a.b.c",
                &[1, 2, 5, 6, 10, 11, 12, 18, 20, 21, 22, 23, 24, 26],
            ),
            ("a.b", &[3, 5, 6, 7, 8, 9, 11, 12, 15, 21, 22, 23, 24, 26]),
            ("a.b.b", &[3, 5, 6, 7, 11, 12, 14, 18, 21, 22, 23, 24, 26]),
            ("", &[5, 6, 17, 24]),
            ("b.c.c", &[5, 6, 18, 21, 22, 23, 24, 26]),
            ("a.a.a.a.a", &[5, 6, 11, 12, 21, 22, 23, 24]),
            ("vodka.gin", &[5, 6, 8, 21, 22, 23, 24]),
            ("vodka.martini", &[5, 6, 8, 19, 21, 22, 23, 24]),
            ("b.b.c", &[5, 6, 10, 13, 18, 21, 22, 23, 24, 26]),
            ("nothing.here.at.all", &[5, 6, 21, 22, 23, 24]),
            ("oneword", &[5, 6, 21, 22, 23, 24, 25]),
        ];
        let check = |trie: &TopicTrie<i32>, cases: &[(&str, &[i32])]| {
            for (key, expected) in cases {
                let mut got = Vec::new();
                trie.matches(key, &mut got);
                got.sort();
                got.dedup();
                assert_eq!(&got, expected, "routing key {key:?}");
            }
        };
        check(&trie, cases);
        // The one-pattern matcher gives the same table.
        for (key, expected) in cases {
            let got: Vec<i32> = bindings
                .iter()
                .filter(|(p, _)| topic_matches(p, key))
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(&got, expected, "routing key {key:?}");
        }

        // RabbitMQ then removes bindings 1, 5, 11, 19 and 21.
        for (p, v) in [
            ("a.b.c", 1),
            ("#", 5),
            ("a.#", 11),
            ("vodka.martini", 19),
            ("*.#", 21),
        ] {
            assert!(trie.remove(p, &v));
        }
        assert!(!trie.remove("#", &5));
        check(
            &trie,
            &[
                ("a.b.c", &[2, 6, 10, 12, 18, 20, 22, 23, 24, 26]),
                ("a.b", &[3, 6, 7, 8, 9, 12, 15, 22, 23, 24, 26]),
                ("", &[6, 17, 24]),
                ("vodka.martini", &[6, 8, 22, 23, 24]),
                ("oneword", &[6, 22, 23, 24, 25]),
            ],
        );
        assert_eq!(trie.len(), 21);
    }

    #[test]
    fn one_pattern_edges() {
        let cases = [
            // The empty key has no words; the empty pattern matches only it.
            ("", "", true),
            ("#", "", true),
            ("*", "", false),
            ("", "a", false),
            ("#.#", "", true),
            ("*.#", "", false),
            // Empty words are words.
            ("*", ".", false),
            ("*.*", ".", true),
            ("a.*", "a.", true),
            ("*.a", ".a", true),
            ("a..b", "a..b", true),
            ("a..b", "a.b", false),
            ("a.*.b", "a..b", true),
            ("#", ".", true),
            // `#` may swallow nothing, anywhere.
            ("a.#", "a", true),
            ("#.a", "a", true),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a", false),
            ("a.#.b", "a.x.y.b", true),
            ("a.#.b", "a.b.c", false),
            ("#.b.#", "b", true),
            ("#.*", "", false),
            ("#.*.#", "x", true),
            ("a.#.#.c", "a.c", true),
            ("a.#.b.#.c", "a.b.b.c", true),
            ("a.#.b.#.c", "a.c.b", false),
            // Wildcards only as whole words.
            ("a*", "ab", false),
            ("a*", "a*", true),
            ("#a", "a", false),
            // Keys are literal: a `*` word in a key is just a word.
            ("*", "*", true),
            ("a", "*", false),
            ("a.b", "a.b.c", false),
            ("a.b.c", "a.b", false),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(
                topic_matches(pattern, key),
                expected,
                "{pattern:?} vs {key:?}"
            );
            let mut trie = TopicTrie::new();
            trie.insert(pattern, ());
            let mut got = Vec::new();
            trie.matches(key, &mut got);
            assert_eq!(!got.is_empty(), expected, "trie: {pattern:?} vs {key:?}");
        }
    }

    /// Many `#` and a long key: one back-tracking point keeps this quick
    /// (a naive recursive matcher takes exponential time here).
    #[test]
    fn many_hashes_stay_quick() {
        let pattern = "#.a.#.a.#.a.#.a.#.a.#.a.#.b";
        let key = vec!["a"; 200].join(".");
        assert!(!topic_matches(pattern, &key));
        assert!(topic_matches(pattern, &format!("{key}.b")));
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("a"),
            Just("b"),
            Just(""),
            Just("*"),
            Just("#"),
            Just("ab"),
        ]
    }

    fn dotted(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(word(), 0..max).prop_map(|w| w.join("."))
    }

    proptest! {
        /// The trie (all bindings at once) and `topic_matches` (one pattern)
        /// reach the same bindings for any patterns and key.
        #[test]
        fn trie_and_one_pattern_matcher_agree(
            patterns in proptest::collection::vec(dotted(7), 1..24),
            keys in proptest::collection::vec(dotted(8), 1..8),
        ) {
            let mut trie = TopicTrie::new();
            for (i, p) in patterns.iter().enumerate() {
                trie.insert(p, i);
            }
            for key in &keys {
                let mut got = Vec::new();
                trie.matches(key, &mut got);
                got.sort_unstable();
                got.dedup();
                let want: Vec<usize> = (0..patterns.len())
                    .filter(|&i| topic_matches(&patterns[i], key))
                    .collect();
                prop_assert_eq!(got, want, "key {:?}, patterns {:?}", key, patterns);
            }
        }
    }

    #[test]
    fn wide_levels_switch_to_a_map() {
        let mut t = TopicTrie::new();
        for i in 0..100 {
            assert!(t.insert(&format!("devices.{i}.cmd"), i));
        }
        let mut got = Vec::new();
        t.matches("devices.42.cmd", &mut got);
        assert_eq!(got, vec![42]);
        for i in 0..100 {
            assert!(t.remove(&format!("devices.{i}.cmd"), &i));
        }
        assert_eq!(t.len(), 0);
        got.clear();
        t.matches("devices.42.cmd", &mut got);
        assert!(got.is_empty());
    }

    #[test]
    fn empty_words_and_duplicates() {
        let mut t = TopicTrie::new();
        assert!(t.insert("a..b", 1));
        assert!(!t.insert("a..b", 1));
        assert!(t.insert("a.*.b", 2));
        let mut got = Vec::new();
        t.matches("a..b", &mut got);
        got.sort();
        assert_eq!(got, vec![1, 2]);
    }
}
