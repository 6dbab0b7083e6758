//! The one error type of a spec: which field, and what rule it breaks.

use std::fmt;

/// A spec that cannot run, naming the field at fault.
///
/// ```
/// use oblivion_protocol::JobSpec;
/// let err = JobSpec::from_json(r#"{"name": "x", "rounds": -1}"#).unwrap_err();
/// assert_eq!(err.field, "rounds");
/// assert!(err.to_string().starts_with("rounds: "));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecError {
    /// Dotted path of the field, e.g. `optimizer.learning_rate`; empty when
    /// the document as a whole is malformed.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl SpecError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Turns a JSON decoding error into one that names the field.
    pub(crate) fn from_json(err: serde_path_to_error::Error<serde_json::Error>) -> SpecError {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            // Not JSON at all: no field to blame.
            return SpecError::new("", format!("malformed JSON: {inner}"));
        }
        let message = inner.to_string();
        // serde reports missing (and, depending on key order, unknown)
        // fields at the parent's path; append the field's own name so the
        // error points at it.
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        let mut field = if path == "." { String::new() } else { path };
        // serde_path_to_error sometimes already ends the path with the name.
        let named = named.filter(|name| field.rsplit('.').next() != Some(*name));
        if let Some(name) = named {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
        }
        // Drop serde's " at line L column C" tail: the field says where.
        let message = match message.rfind(" at line ") {
            Some(i) if inner.is_data() => message[..i].to_string(),
            _ => message,
        };
        SpecError { field, message }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SpecError {}
