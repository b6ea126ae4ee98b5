//! Validation of the short, subject-safe tokens used as node ids and job ids.

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
}
