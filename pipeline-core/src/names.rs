//! Names as users write them, and the slugs derived from them where a name becomes a file,
//! a folder or a job id.
//!
//! A pipeline, project, step or artifact name may hold spaces and any printable character
//! ("custom pipeline logic", "train (fold 2)"), as in ClearML. Files and ids never use the name
//! itself but its [`slug`]: a name made only of ASCII letters, digits, `_`, `-` and `.` (not
//! starting with `.`, at most [`PLAIN_MAX`] bytes) is its own slug, so folders of runs recorded
//! before names were free keep their paths; any other name maps to a sanitized prefix and a
//! hash of the whole name, so two different names never share a folder by accident and no name
//! can reach outside its folder (`..`, `/`).

use std::borrow::Cow;

/// The longest name accepted, in characters.
pub const NAME_MAX: usize = 200;

/// The longest name that is its own slug, in bytes.
pub const PLAIN_MAX: usize = 64;

/// Why `name` cannot name a pipeline, project, step or artifact, or `None` if it can: it must
/// be non-empty, at most [`NAME_MAX`] characters, without control characters (newlines, tabs)
/// and without leading or trailing whitespace.
pub fn problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a name cannot be empty")
    } else if name.chars().count() > NAME_MAX {
        Some("a name has at most 200 characters")
    } else if name.chars().any(char::is_control) {
        Some("a name cannot hold control characters (newlines, tabs)")
    } else if name.trim() != name {
        Some("a name cannot start or end with whitespace")
    } else {
        None
    }
}

/// Whether `name` is its own slug.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= PLAIN_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The file, folder and id form of `name`: `name` itself when it is plain (see the module),
/// else up to 40 of its characters with every other character as `_`, then `-` and 8 hex
/// digits of a hash of the whole name. Stable across versions and platforms: a resumed run
/// finds its folders by it.
pub fn slug(name: &str) -> Cow<'_, str> {
    if plain(name) {
        return Cow::Borrowed(name);
    }
    let mut out: String = name
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.push_str(&format!("-{:08x}", fnv1a(name.as_bytes())));
    Cow::Owned(out)
}

/// 32-bit FNV-1a: tiny, and fixed forever (unlike `std`'s hashers, which may change).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5_u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_their_own_slug() {
        for name in ["fit", "prep.v2", "step_2", "a-b", &"x".repeat(PLAIN_MAX)] {
            assert_eq!(slug(name), name);
        }
    }

    #[test]
    fn other_names_get_a_safe_hashed_slug() {
        let s = slug("custom pipeline logic");
        assert!(s.starts_with("custom_pipeline_logic-"), "{s}");
        assert_eq!(s.len(), "custom_pipeline_logic-".len() + 8);
        for name in [
            "..",
            ".",
            ".hidden",
            "a/b",
            "../../etc",
            "a\\b",
            "é",
            &"x".repeat(PLAIN_MAX + 1),
        ] {
            let s = slug(name);
            assert!(
                s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{name:?} -> {s:?}"
            );
            assert!(!s.starts_with('.') && s.len() <= 49, "{name:?} -> {s:?}");
        }
        // Names that sanitize alike still differ.
        assert_ne!(slug("a b"), slug("a/b"));
        assert_ne!(slug("a b"), "a_b");
        // Fixed forever: a resumed run finds its folder by it.
        assert_eq!(slug("a b"), format!("a_b-{:08x}", fnv1a(b"a b")));
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(problem("custom pipeline logic"), None);
        assert_eq!(problem("train (fold 2) — ünïcode"), None);
        assert!(problem("").is_some());
        assert!(problem(" x").is_some());
        assert!(problem("x\n").is_some());
        assert!(problem("a\tb").is_some());
        assert!(problem(&"x".repeat(NAME_MAX + 1)).is_some());
        assert_eq!(problem(&"é".repeat(NAME_MAX)), None);
    }
}
