//! Topic-exchange matching: a trie of binding-key words with separate children
//! for `*` (exactly one word) and `#` (zero or more words), AMQP 0-9-1 semantics
//! as RabbitMQ implements them. A routing key is split on `.`; the empty key
//! has no words (so `#` matches it and `*` does not).

use std::collections::HashMap;

/// Destinations bound by pattern; `T` is compared with `PartialEq` to unbind.
#[derive(Debug)]
pub(crate) struct TopicTrie<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    words: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            words: HashMap::new(),
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

fn words(key: &str) -> impl Iterator<Item = &str> {
    // "" has no words; "a..b" has an empty middle word.
    let mut it = (!key.is_empty()).then(|| key.split('.'));
    std::iter::from_fn(move || it.as_mut()?.next())
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
        for w in words(pattern) {
            node = match w {
                "*" => node.star.get_or_insert_with(Default::default),
                "#" => node.hash.get_or_insert_with(Default::default),
                _ => node.words.entry(w.into()).or_default(),
            };
        }
        if node.values.contains(&value) {
            return false;
        }
        node.values.push(value);
        self.len += 1;
        true
    }

    /// Removes a binding; returns false when it was not there.
    pub fn remove(&mut self, pattern: &str, value: &T) -> bool {
        let ws: Vec<&str> = words(pattern).collect();
        let removed = remove_at(&mut self.root, &ws, value);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Removes every binding whose value satisfies `f`.
    pub fn retain(&mut self, f: &mut impl FnMut(&T) -> bool) {
        self.len -= retain_at(&mut self.root, f);
    }

    /// Appends every value whose pattern matches `key` (a value bound by two
    /// matching patterns appears twice; callers deduplicate).
    pub fn matches(&self, key: &str, out: &mut Vec<T>) {
        let ws: Vec<&str> = words(key).collect();
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

fn retain_at<T>(node: &mut Node<T>, f: &mut impl FnMut(&T) -> bool) -> usize {
    let before = node.values.len();
    node.values.retain(|v| f(v));
    let mut removed = before - node.values.len();
    for child in [&mut node.star, &mut node.hash] {
        if let Some(c) = child.as_deref_mut() {
            removed += retain_at(c, f);
            if c.is_empty() {
                *child = None;
            }
        }
    }
    node.words.retain(|_, c| {
        removed += retain_at(c, f);
        !c.is_empty()
    });
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
    if let Some(child) = node.words.get(*first) {
        match_at(child, rest, out);
    }
    if let Some(s) = &node.star {
        match_at(s, rest, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        trie.retain(&mut |v| *v % 2 == 0);
        let mut got = Vec::new();
        trie.matches("a.b.c", &mut got);
        got.sort();
        got.dedup();
        assert_eq!(got, vec![2, 6, 10, 12, 18, 20, 22, 24, 26]);
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
