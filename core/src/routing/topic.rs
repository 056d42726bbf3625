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
        let ws: Vec<&str> = words(pattern).collect();
        let removed = remove_at(&mut self.root, &ws, value);
        if removed {
            self.len -= 1;
        }
        removed
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
