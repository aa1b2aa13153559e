//! Types that use the serde features postcard cannot carry, for the suites
//! `serde_limits` (bare: each fails with an error that says why) and
//! `self_describing` (wrapped in `SelfDescribing`: each crosses).

use serde::{Deserialize, Serialize};

/// A skipped `None` shifts `name` into its place: postcard reads the
/// string's length (5 for "hello") as the `Option`'s discriminant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<u32>,
    pub name: String,
}

/// The value of [`Skipping`] the suites send: its `note` is skipped.
pub fn skipping() -> Skipping {
    Skipping {
        note: None,
        name: "hello".into(),
    }
}

/// The struct [`Flattened`] flattens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inner {
    pub a: u32,
    pub b: String,
}

/// Serialized as a map of unknown length, which postcard refuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flattened {
    pub id: u32,
    #[serde(flatten)]
    pub inner: Inner,
}

/// The value of [`Flattened`] the suites send.
pub fn flattened() -> Flattened {
    Flattened {
        id: 1,
        inner: Inner {
            a: 2,
            b: "three".into(),
        },
    }
}

/// Decoded with `deserialize_any`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Untagged {
    Number(u64),
    Text(String),
}

/// The value of [`Untagged`] the suites send.
pub fn untagged() -> Untagged {
    Untagged::Text("hello".into())
}

/// Internally tagged: decoded with `deserialize_any`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Tagged {
    Circle { r: f64 },
    Square { side: f64 },
}

/// The value of [`Tagged`] the suites send.
pub fn tagged() -> Tagged {
    Tagged::Square { side: 2.0 }
}
