//! Columns that rows read as typed values. `Text<T>`: text holding JSON
//! (documents, lists) or a state by name, for `#[derive(sqlx::FromRow)]`
//! (`#[sqlx(try_from = "Text<T>")]`) and for tuples; `Int<T>`: an integer
//! holding an id or a count, for tuples and single values (a derived row
//! says `#[sqlx(try_from = "i64")]`). Either fails as a corrupt row when
//! the stored value is not a `T`. Written here because sqlx's own `Json`
//! and `Text` wrappers do not decode through its `Any` driver, which
//! serves both databases.

use oblivion_protocol::api::{JobStatus, PaymentState};
use oblivion_protocol::market::{ListingState, ShareLeaf};
use oblivion_protocol::profile::ChainEventKind;
use oblivion_protocol::{BlobId, JobSpec, ModelSpec, Visibility, Wei};
use sqlx::any::{AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Any, Decode, Type};

/// A value read from a text column.
pub(crate) trait FromText: Sized {
    /// Parses `text`, or says why it cannot.
    fn from_text(text: &str) -> Result<Self, String>;
}

/// A text column holding a `T`.
pub(crate) struct Text<T>(T);

impl<T> Text<T> {
    /// The value.
    pub(crate) fn get(self) -> T {
        self.0
    }
}

impl<T> Type<Any> for Text<T> {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r, T: FromText> Decode<'r, Any> for Text<T> {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Any>>::decode(value)?;
        Ok(Text(T::from_text(text)?))
    }
}

/// An integer column holding a `T`.
pub(crate) struct Int<T>(T);

impl<T> Int<T> {
    /// The value.
    pub(crate) fn get(self) -> T {
        self.0
    }
}

impl<T> Type<Any> for Int<T> {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r, T> Decode<'r, Any> for Int<T>
where
    T: TryFrom<i64>,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Int(T::try_from(<i64 as Decode<Any>>::decode(value)?)?))
    }
}

/// Stored as JSON.
macro_rules! json_text {
    ($($t:ty),*) => {$(
        impl FromText for $t {
            fn from_text(text: &str) -> Result<Self, String> {
                serde_json::from_str(text).map_err(|e| e.to_string())
            }
        }
    )*};
}

json_text!(
    JobSpec,
    ModelSpec,
    Vec<usize>,
    Vec<u32>,
    Vec<Vec<u64>>,
    Vec<ShareLeaf>
);

/// Stored by name.
macro_rules! named_text {
    ($($t:ty),*) => {$(
        impl FromText for $t {
            fn from_text(text: &str) -> Result<Self, String> {
                <$t>::parse(text).ok_or_else(|| format!("no {} is named {text:?}", stringify!($t)))
            }
        }
    )*};
}

named_text!(
    JobStatus,
    PaymentState,
    Visibility,
    ListingState,
    ChainEventKind
);

/// Stored as its decimal digits.
impl FromText for Wei {
    fn from_text(text: &str) -> Result<Self, String> {
        Wei::parse(text).map_err(|e| e.to_string())
    }
}

/// Stored as its hex digits.
impl FromText for BlobId {
    fn from_text(text: &str) -> Result<Self, String> {
        BlobId::parse(text).map_err(|e| e.to_string())
    }
}

/// A slot's data: empty text for a slot without any (a federated job's),
/// since the column is `NOT NULL` from the first schema on.
impl FromText for Option<BlobId> {
    fn from_text(text: &str) -> Result<Self, String> {
        match text {
            "" => Ok(None),
            text => BlobId::from_text(text).map(Some),
        }
    }
}

/// The text an optional blob column holds (see `Option<BlobId>`'s
/// [`FromText`]).
pub(crate) fn optional_blob(blob: Option<BlobId>) -> String {
    blob.map(|b| b.hex()).unwrap_or_default()
}

/// What `#[sqlx(try_from = "Text<T>")]` asks of a field's type: one impl
/// per type (a blanket one would be `impl<T> From<Text<T>> for T`, which
/// Rust refuses for a type of another crate).
macro_rules! from_text_column {
    ($($t:ty),*) => {$(
        impl From<Text<$t>> for $t {
            fn from(text: Text<$t>) -> $t {
                text.0
            }
        }
    )*};
}

from_text_column!(
    JobSpec,
    ModelSpec,
    Vec<usize>,
    Vec<Vec<u64>>,
    Vec<u32>,
    JobStatus,
    PaymentState,
    Visibility,
    Wei,
    BlobId,
    Vec<ShareLeaf>,
    ListingState,
    ChainEventKind
);
