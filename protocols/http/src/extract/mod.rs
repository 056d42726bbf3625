//! Request extractors that answer bad input with [`crate::error::ApiError`]:
//! JSON bodies that name the field at fault, and query strings read strictly
//! (unknown or repeated parameters are refused, `tag=a&tag=b` is a list),
//! and path parameters.

mod json;
mod path;
mod query;

pub use json::JsonBody;
#[cfg(test)]
pub use json::parse_json;
pub use path::Path;
pub use query::Query;
