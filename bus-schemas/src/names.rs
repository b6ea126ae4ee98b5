//! Validation of node and job ids (short subject-safe tokens) and of SDFS file names.

use thiserror::Error;

/// The longest node or job id accepted.
pub const MAX_TOKEN_LEN: usize = 64;

/// Why a node or job id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The id was empty.
    #[error("an id cannot be empty")]
    Empty,
    /// The id was longer than [`MAX_TOKEN_LEN`] bytes.
    #[error("id {0:?} is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong(String),
    /// The id held a character outside letters, digits, `-` and `_`.
    #[error("id {0:?} may only hold letters, digits, '-' and '_'")]
    BadChar(String),
    /// An SDFS name breaks the grammar; the text says how.
    #[error("SDFS name {name:?}: {reason}")]
    BadFileName {
        /// The refused name (cut to 80 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The longest SDFS name accepted, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 1024;

/// Checks an SDFS file name: 1–1024 bytes of UTF-8, no NUL, no leading `/`, and no empty,
/// `.` or `..` segment between slashes (so no trailing `/` either).
pub fn validate_file_name(name: &str) -> Result<(), NameError> {
    let bad = |reason| NameError::BadFileName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("a name cannot be empty"));
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(bad("a name is at most 1024 bytes"));
    }
    if name.contains('\0') {
        return Err(bad("a name cannot hold a NUL byte"));
    }
    if name.starts_with('/') {
        return Err(bad("a name cannot start with '/'"));
    }
    for segment in name.split('/') {
        match segment {
            "" => {
                return Err(bad(
                    "a name cannot have an empty segment ('//' or a trailing '/')",
                ))
            }
            "." | ".." => return Err(bad("a name cannot have a '.' or '..' segment")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks an SDFS directory (prefix) name: a file name, optionally with one trailing `/`.
pub fn validate_dir_name(dir: &str) -> Result<(), NameError> {
    validate_file_name(dir.strip_suffix('/').unwrap_or(dir))
}

/// Checks that `id` is a subject-safe token: 1–64 ASCII letters, digits, `-` or `_`.
pub fn validate_token(id: &str) -> Result<(), NameError> {
    if id.is_empty() {
        return Err(NameError::Empty);
    }
    if id.len() > MAX_TOKEN_LEN {
        return Err(NameError::TooLong(id.to_string()));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(NameError::BadChar(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_subject_safe_tokens() {
        assert_eq!(validate_token("node-1_a"), Ok(()));
    }

    #[test]
    fn refuses_dots_wildcards_and_spaces() {
        for bad in ["a.b", "a*", ">", "a b", "é"] {
            assert!(
                matches!(validate_token(bad), Err(NameError::BadChar(_))),
                "{bad}"
            );
        }
        assert_eq!(validate_token(""), Err(NameError::Empty));
        assert!(matches!(
            validate_token(&"x".repeat(65)),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn file_names_follow_the_grammar() {
        for ok in [
            "a",
            "datasets/fashion-mnist/train/x.png",
            "ü/ß 1.txt",
            "a..b/.hidden",
        ] {
            assert_eq!(validate_file_name(ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(1025);
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/../b",
            "a/.",
            "a\0b",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_file_name(bad), Err(NameError::BadFileName { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(validate_dir_name("datasets/"), Ok(()));
        assert!(validate_dir_name("/").is_err());
    }
}
