//! The v2 JSON model (etcd's `NodeExtern` and `Event`) and the v2 path <-> v3 key mapping.
//!
//! Mapping (docs/keyspace.md): the v2 path `/a/b` is the v3 key `/a/b`, byte for byte. A
//! directory `/a/b` exists while some key starts with `/a/b/`; directories made through v2
//! (explicitly with `dir=true`, or as parents of a key) have a marker key `/a/b/` (empty value)
//! so they outlive their children, as in etcd. The root `/` is the directory of every key that
//! starts with `/`; v3 keys that do not start with `/` have no v2 path.

use serde::Serialize;

/// etcd's node JSON; fields in etcd's order, empty ones left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Node {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub ttl: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<Node>>,
    #[serde(rename = "modifiedIndex", skip_serializing_if = "is_zero")]
    pub modified_index: i64,
    #[serde(rename = "createdIndex", skip_serializing_if = "is_zero")]
    pub created_index: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// etcd's event JSON: what every keys request answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Node>,
    #[serde(rename = "prevNode", skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<Node>,
}

/// Go's `path.Clean(path.Join("/", p))`: absolute, no `.`/`..`, no doubled or trailing `/`.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The v3 key of the file at `path` (a clean v2 path, not the root).
pub fn file_key(path: &str) -> Vec<u8> {
    path.as_bytes().to_vec()
}

/// The v3 prefix of everything inside directory `path`; also the directory's marker key.
pub fn dir_prefix(path: &str) -> Vec<u8> {
    if path == "/" {
        return b"/".to_vec();
    }
    let mut k = path.as_bytes().to_vec();
    k.push(b'/');
    k
}

/// The directories above `path`, outermost first, without the root: `/a/b/c` -> `/a`, `/a/b`.
pub fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut idx = 0;
    while let Some(pos) = path[idx + 1..].find('/') {
        idx += 1 + pos;
        out.push(path[..idx].to_string());
    }
    out
}

/// A key name hidden from listings (etcd: names starting with `_`).
pub fn hidden(name: &str) -> bool {
    name.starts_with('_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_like_go() {
        assert_eq!(clean(""), "/");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("a/b/"), "/a/b");
        assert_eq!(clean("//a//b/./c/.."), "/a/b");
        assert_eq!(clean("/../../x"), "/x");
    }

    #[test]
    fn keys_and_ancestors() {
        assert_eq!(file_key("/a/b"), b"/a/b".to_vec());
        assert_eq!(dir_prefix("/a/b"), b"/a/b/".to_vec());
        assert_eq!(dir_prefix("/"), b"/".to_vec());
        assert_eq!(ancestors("/a/b/c"), vec!["/a".to_string(), "/a/b".to_string()]);
        assert!(ancestors("/a").is_empty());
    }

    #[test]
    fn node_json_matches_etcds_shape() {
        let n = Node { key: Some("/a".into()), value: Some(String::new()), modified_index: 4, created_index: 4, ..Default::default() };
        assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"key":"/a","value":"","modifiedIndex":4,"createdIndex":4}"#);
        let root = Node { dir: true, ..Default::default() };
        let e = Event { action: "get", node: Some(root), prev_node: None };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"action":"get","node":{"dir":true}}"#);
    }
}
