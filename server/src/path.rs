//! Znode paths, validated as ZooKeeper's `PathUtils.validatePath` does.
//!
//! A path is absolute and `/`-separated, with no empty, `.` or `..` component, no trailing `/`
//! (except the root itself) and no control or otherwise unprintable characters. `/zookeeper`
//! and everything below it is reserved: readable, never writable.

use crate::api::{ErrorCode, KeeperError};

/// The root of the tree.
pub const ROOT: &str = "/";
/// ZooKeeper's reserved subtree; keeper creates it and refuses writes to it.
pub const RESERVED: &str = "/zookeeper";

/// Checks that `path` names a znode. Any failure is `bad_arguments`.
pub fn validate(path: &str) -> Result<(), KeeperError> {
    check(path).map_err(|why| bad_path(path, why))
}

/// Checks the path of a create. A sequential create's path is a prefix to which the server
/// appends a 10-digit counter, so it may end with `/` (`/a/` becomes `/a/0000000003`):
/// it is valid when the prefix followed by a digit is.
pub fn validate_create(path: &str, sequential: bool) -> Result<(), KeeperError> {
    if sequential {
        check(&format!("{path}0")).map_err(|why| bad_path(path, why))
    } else {
        validate(path)
    }
}

/// The parent of `path`; `None` for the root. `path` must be valid (or a sequential prefix
/// ending with `/`, whose parent is the part before that `/`).
pub fn parent(path: &str) -> Option<&str> {
    if path == ROOT {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some(ROOT),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last component of `path` (`""` for the root).
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// True for `/zookeeper` and everything below it.
pub fn is_reserved(path: &str) -> bool {
    path.strip_prefix(RESERVED)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `base` joined with a child `name`.
pub fn join(base: &str, name: &str) -> String {
    if base == ROOT {
        format!("/{name}")
    } else {
        format!("{base}/{name}")
    }
}

fn bad_path(path: &str, why: &str) -> KeeperError {
    KeeperError::new(
        ErrorCode::BadArguments,
        format!("invalid path {path:?}: {why}"),
    )
}

fn check(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("a path must not be empty");
    }
    if !path.starts_with('/') {
        return Err("a path must start with '/'");
    }
    if path == ROOT {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err("a path must not end with '/'");
    }
    if let Some(c) = path.chars().find(|&c| is_forbidden(c)) {
        return Err(if c == '\0' {
            "a path must not contain the null character"
        } else {
            "a path must not contain control or unprintable characters"
        });
    }
    for component in path[1..].split('/') {
        match component {
            "" => return Err("a path must not contain an empty component ('//')"),
            "." | ".." => return Err("a path must not contain '.' or '..' components"),
            _ => {}
        }
    }
    Ok(())
}

/// The characters ZooKeeper's `PathUtils` refuses: U+0000, the C0 and C1 controls (and DEL),
/// the surrogate and private-use block U+D800–U+F8FF (surrogates cannot occur in a Rust
/// string) and the specials U+FFF0–U+FFFF.
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || ('\u{e000}'..='\u{f8ff}').contains(&c)
        || ('\u{fff0}'..='\u{ffff}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/zookeeper",
            "/a.b",
            "/...",
            "/.a",
            "/a./b..",
            "/é/中文",
            "/a b",
            "/leader_0000000001",
        ] {
            assert!(validate(p).is_ok(), "{p:?} should be valid");
        }
    }

    #[test]
    fn refuses_malformed_paths() {
        for p in [
            "",
            "a",
            "a/b",
            "//",
            "/a/",
            "/a//b",
            "/.",
            "/..",
            "/a/.",
            "/a/../b",
            "/./a",
            "/a\0",
            "/a\nb",
            "/\u{7f}",
            "/\u{85}",
            "/\u{e000}",
            "/\u{f8ff}",
            "/\u{fff0}",
            "/\u{ffff}",
        ] {
            let err = validate(p).expect_err(p);
            assert_eq!(err.error, ErrorCode::BadArguments, "{p:?}");
            assert!(err.message.contains("invalid path"), "{}", err.message);
        }
    }

    #[test]
    fn sequential_prefix_may_end_with_slash() {
        assert!(validate_create("/a/", true).is_ok());
        assert!(validate_create("/", true).is_ok());
        assert!(validate_create("/a/leader_", true).is_ok());
        assert!(validate_create("/a/", false).is_err());
        assert!(validate_create("/a//", true).is_err());
        assert!(
            validate_create("/a/.", true).is_ok(),
            "'.0' is an ordinary name"
        );
        assert!(validate_create("/a/../", true).is_err());
        assert!(validate_create("a", true).is_err());
        assert!(validate_create("", true).is_err());
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a/b/c"), Some("/a/b"));
        assert_eq!(parent("/a/"), Some("/a"));
        assert_eq!(name("/"), "");
        assert_eq!(name("/a"), "a");
        assert_eq!(name("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }

    #[test]
    fn reserved_subtree() {
        assert!(is_reserved("/zookeeper"));
        assert!(is_reserved("/zookeeper/quota"));
        assert!(is_reserved("/zookeeper/"));
        assert!(!is_reserved("/zookeeperx"));
        assert!(!is_reserved("/"));
        assert!(!is_reserved("/a/zookeeper"));
    }
}
